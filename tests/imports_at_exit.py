"""Run an entry point in a fresh interpreter and read which heavy libraries it had imported when it
exited: the proof that an answer (`--help`, a refusal, "no GPU here") came before the slow imports."""

import ast
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "lightning", "matplotlib")
ROOT = Path(__file__).resolve().parents[1]
REPORT = "LOADED"


def run_noting_imports(target: str, args: list[str], module: bool = False) -> tuple[subprocess.CompletedProcess, list[str]]:
    """``python TARGET ARGS`` (``python -m TARGET ARGS`` with ``module``) from the repository root, and
    the :data:`HEAVY` modules loaded at its exit; the process's stdout comes back without that report."""
    start = (f"runpy.run_module({target!r}, run_name='__main__', alter_sys=True)" if module
             else f"runpy.run_path({target!r}, run_name='__main__')")
    code = (f"import atexit, runpy, sys; atexit.register(lambda: print({REPORT!r}, [m for m in {HEAVY!r} if m in sys.modules])); "
            f"sys.argv = [{target!r}, *{args!r}]; {start}")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = result.stdout.splitlines()
    reports = [line for line in lines if line.startswith(f"{REPORT} ")]
    assert len(reports) == 1, result.stdout[-2000:] + result.stderr[-2000:]
    result.stdout = "".join(f"{line}\n" for line in lines if line not in reports)
    return result, ast.literal_eval(reports[0][len(REPORT) + 1:])
