"""The documented commands the tests run: the python lines of the README's and docs/' bash blocks
marked ``<!-- runnable -->``, and the smoke sizes appended to run one in seconds.

A command whose comment says ``# needs ...`` (CelebA, a GPU, a cluster, a browser, a killed run) is
not run, for that reason. End-to-end tests that need a run of their own take the documented line
itself (:func:`documented`), so that line is run once, by them, with their checks on its output."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = re.compile(r"<!-- runnable -->\n```bash\n(.*?)```", flags=re.DOTALL)
NEEDS = re.compile(r"#.*\bneeds ([^#]+?)\s*$")


def runnable_commands() -> list[tuple[str, str, str | None]]:
    """(page, command line, what it needs or None) of every python command in a runnable block."""
    found = []
    for page in PAGES:
        for block in RUNNABLE.findall(page.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                if line.startswith("python "):
                    needs = NEEDS.search(line)
                    found.append((page.name, line, needs and needs.group(1)))
    return found


def overrides_of(arguments: list[str]) -> list[str]:
    """The Hydra overrides of a command line: flags, ``--cfg job`` and placeholders such as
    ``<same overrides>`` dropped, ``<run>`` inside a value made a plain name, and each sweep
    (``a=1,2``) at its first value."""
    arguments = [a for a, before in zip(arguments, ["", *arguments[:-1]], strict=True) if before != "--cfg"]
    # as the shell passes them ($HOME expanded; bash leaves ~ after "key=" alone, and Hydra refuses it)
    words = [re.sub(r"<[^<>=\s]+>", "X", os.path.expandvars(a)) for a in arguments if "=" in a and not a.startswith("-")]
    parsed = OverridesParser.create().parse_overrides(words)
    return [f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}" if o.is_sweep_override() else o.input_line
            for o in parsed]


def smoke_sizes() -> dict[str, object]:
    """The smoke experiment's settings as dotted keys (its sizes and lengths), less what chooses the run."""
    leaves = {}

    def walk(node, prefix: str) -> None:
        for key, value in node.items():
            if OmegaConf.is_dict(value):
                walk(value, f"{prefix}{key}.")
            elif key not in ("defaults", "task_name"):
                leaves[f"{prefix}{key}"] = value

    walk(OmegaConf.load(ROOT / "conf" / "experiment" / "smoke.yaml"), "")
    return leaves


def at_smoke_size(script: str, arguments: list[str]) -> list[str]:
    """The smoke sizes the command's composed config has (a folder of images has no train_size), as overrides."""
    os.environ.setdefault("INPAINT_ROOT", str(ROOT))
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(script, overrides=[*overrides_of(arguments), "paths.output_dir=unused"])
    absent = object()
    return [f"{key}={value}" for key, value in smoke_sizes().items() if OmegaConf.select(cfg, key, default=absent) is not absent]


def documented(line: str, placeholders: dict[str, str] | None = None) -> list[str]:
    """The arguments after ``python`` of a documented runnable ``line`` (found in a runnable block, or
    an error: a changed line fails the test that runs it), ``placeholders`` replaced (``{"<run>":
    folder}``), the smoke sizes appended."""
    lines = [command for _, command, _ in runnable_commands() if shlex.split(command, comments=True) == shlex.split(line)]
    assert lines, f"{line!r} is no longer a runnable documented command"
    for placeholder, value in (placeholders or {}).items():
        line = line.replace(placeholder, value)
    words = shlex.split(line)[1:]
    return [*words, *at_smoke_size(words[0].removesuffix(".py"), words[1:])]
