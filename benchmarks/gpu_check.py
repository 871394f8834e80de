"""``python -m benchmarks.gpu_check [--out FILE] [--timeout S] [--dir DIR]``: does the project run
right on this machine's CUDA GPUs? (``make gpu-check``; about 5 minutes.)

Steps: the smoke experiment on one GPU, the demo (``accelerator: auto``, so the GPU), the smoke
experiment under DDP on every GPU when there are several, the quick benchmarks on ``cuda``, and
the exact Jacobian on the GPU against the CPU's. Each training run is a ``train.py`` subprocess in
a folder of its own, read back through its ``train.log`` and ``analysis/summary.json``. Writes one
JSON of everything measured (after every step, so a run cut short still leaves what it had),
prints a table, and exits 1 if any step failed. Without a CUDA GPU it says so in one line, writes
nothing and exits 0.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from analysis.jacobian import homogeneity_error, jacobian
from benchmarks import ROOT
from benchmarks.cases import CASES
from inpaint.hardware import capabilities
from inpaint.models import ContextEncoder

PRECISION_LINE = re.compile(r"\] - ((?:precision auto|trainer\.precision=).*)")  # train.py's log of its choice
GPU_LINE = re.compile(r"GPU available: .*, used: (True|False)")  # Lightning's console line


def run_command(command: list[str], timeout: float) -> dict:
    """Run ``command`` in the repository root; its exit code (None if it ran past ``timeout`` seconds
    and was killed, with every process it started), wall seconds and console output."""
    timeout, start = max(timeout, 1), time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)  # a session of its own: DDP's extra processes die with it
    try:
        output, _ = process.communicate(timeout=timeout)
        rc = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        rc = None
    seconds = time.perf_counter() - start
    return {"command": " ".join(command), "rc": rc, "seconds": seconds, "timeout": timeout, "output": output}


def verdict(step: dict, problems: list[str]) -> dict:
    """``step`` with ``ok`` and ``reason`` (the problems joined; empty when ok)."""
    return {**step, "ok": not problems, "reason": "; ".join(problems)}


def ran(run: dict) -> list[str]:
    """What went wrong with a subprocess from :func:`run_command`, if anything."""
    if run["rc"] is None:
        return [f"timed out after {run['timeout']:.0f} s"]
    return [] if run["rc"] == 0 else [f"exit code {run['rc']}"]


def read_run(run_dir: str | Path) -> dict:
    """What a ``train.py`` run left in ``run_dir``: the precision line of ``train.log``, the holdout
    PSNR / SSIM and Telea's PSNR (if the baselines ran) from ``analysis/summary.json``. A missing or
    broken file is a failed entry with its reason, never an exception."""
    run_dir = Path(run_dir)
    result: dict = {"run_dir": str(run_dir), "precision_line": None, "precision": None, "psnr": None, "ssim": None,
                    "telea_psnr": None}
    problems = []
    try:
        lines = (run_dir / "train.log").read_text().splitlines()
        found = next((m.group(1) for m in map(PRECISION_LINE.search, lines) if m), None)
    except OSError as error:
        problems.append(f"cannot read train.log ({error.strerror})")
    else:
        if found is None:
            problems.append("train.log has no precision line (precision auto -> ... or trainer.precision=...)")
        else:
            result["precision_line"] = found
            value = re.search(r"(?:-> |=)([\w-]+)", found)
            result["precision"] = value.group(1) if value else None
    try:
        summary = json.loads((run_dir / "analysis" / "summary.json").read_text())
        result["psnr"], result["ssim"] = summary["metrics"]["psnr"], summary["metrics"]["ssim"]
        result["telea_psnr"] = summary.get("baselines", {}).get("telea", {}).get("psnr")
    except OSError as error:
        problems.append(f"cannot read analysis/summary.json ({error.strerror})")
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        problems.append(f"analysis/summary.json is broken ({type(error).__name__}: {error})")
    else:
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (result["psnr"], result["ssim"])):
            problems.append(f"holdout PSNR / SSIM are not finite numbers ({result['psnr']}, {result['ssim']})")
    return verdict(result, problems)


def train_step(run_dir: Path, overrides: list[str], timeout: float) -> dict:
    """One ``train.py`` run on the GPU, read back: passes when it exits 0, Lightning says it used
    the GPU, and :func:`read_run` finds the precision line and finite holdout metrics."""
    run = run_command([sys.executable, "train.py", *overrides, "logger=csv", f"hydra.run.dir={run_dir}"], timeout)
    used = GPU_LINE.search(run["output"])
    parsed = read_run(run_dir)
    step = {**{k: v for k, v in parsed.items() if k not in ("ok", "reason")}, **run,
            "gpu_used": bool(used) and used.group(1) == "True"}
    problems = ran(run) + ([] if step["gpu_used"] else ["Lightning did not report using the GPU"])
    return tail_on_failure(verdict(step, problems + ([] if parsed["ok"] else [parsed["reason"]])))


def tail_on_failure(step: dict, lines: int = 30) -> dict:
    """Keep the last ``lines`` of a failed step's console output (for the reason), drop a passed one's."""
    output = step.pop("output")
    return step if step["ok"] else {**step, "output_tail": output.splitlines()[-lines:]}


def bench_step(out: Path, timeout: float) -> dict:
    """``python -m benchmarks --quick --device cuda``: passes when it exits 0 with a ratio for every
    case (or, for a case measured against its compute bound alone, its explicit ``"ratio": null``). Ratios are timings and are reported, not judged; the device's ``capabilities`` and each
    case's ``efficiency`` (``best_efficiency`` for training) are copied where the benchmarks write them."""
    run = run_command([sys.executable, "-m", "benchmarks", "--quick", "--device", "cuda", "--out", str(out)], timeout)
    problems = ran(run)
    step: dict = {**run, "ratios": {}}
    try:
        results = json.loads(out.read_text())
    except (OSError, ValueError) as error:
        problems.append(f"no benchmark JSON ({error})")
    else:
        cases = {case: results.get(case) or {} for case in CASES}
        step["ratios"] = {case: r.get("ratio") for case, r in cases.items()}
        step["efficiency"] = {case: r.get("efficiency", r.get("best_efficiency")) for case, r in cases.items()}
        step["capabilities"] = results.get("capabilities")
        # a case with no reference to set beside (unet_jacobian: its compute bound only) writes "ratio": null
        problems += [f"no ratio for {c}" for c, ratio in step["ratios"].items()
                     if not isinstance(ratio, (int, float)) and "ratio" not in cases[c]]
    return tail_on_failure(verdict(step, problems))


def reduction_terms(generator: nn.Module, code: int) -> int:
    """Products summed along one entry's chain of the Jacobian: per conv or linear layer its reduction
    length, the larger of its forward sum (what a tangent goes through) and its transposed one (what
    a pull-back goes through), plus the ``code`` size of the product A_y = (dout/dz)(dz/dy)."""
    terms = code
    for layer in generator.modules():
        if isinstance(layer, nn.Linear):
            terms += max(layer.in_features, layer.out_features)
        elif isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            # weight (a, b, kh, kw): b * kh * kw terms one way, a * ceil(kh / sh) * ceil(kw / sw) the other
            a, b, kh, kw = layer.weight.shape
            sh, sw = layer.stride
            terms += max(b * kh * kw, a * math.ceil(kh / sh) * math.ceil(kw / sw))
    return terms


def jacobian_tolerance(terms: int, entries: int) -> float:
    """The largest max |A_a - A_b| / max |A_a| that float32 rounding explains, for two devices that
    compute the same ``entries`` Jacobian entries in different orders, ``terms`` products per entry.

    Each addition rounds by at most eps / 2 relative (eps = torch.finfo(float32).eps), independently,
    so a sum of n terms is off by about eps sqrt(n) of its size (a random walk; the worst case, n eps,
    is never reached by a real summation order). Along the chain of layers that makes up an entry
    the layers' errors add in quadrature: eps sqrt(terms), with ``terms`` the reduction lengths summed
    (:func:`reduction_terms`). Two devices sum in different orders and round independently: their
    difference spreads sqrt(2) times wider. The largest of N such near-Gaussian differences lies
    about sqrt(2 ln N) spreads out. No constant is fitted; the one assumption is no heavy cancellation
    in the entries, mild when the difference is measured against the largest entry. TF32 (a 10-bit
    mantissa: eps 2^-10, about 8,000 times float32's) would exceed it, hence off for the check."""
    eps = torch.finfo(torch.float32).eps
    return eps * math.sqrt(terms) * math.sqrt(2) * math.sqrt(2 * math.log(entries))


def compare_jacobians(
    generator: ContextEncoder, masked: torch.Tensor, device_a: str, device_b: str, other: ContextEncoder | None = None
) -> dict:
    """The whole A_y of ``generator`` at one masked input ``[3, H, W]`` on ``device_a`` against that
    of ``other`` (default: the same generator) on ``device_b``, both float32 in eval mode on copies,
    with TF32 off on CUDA for the check (restored afterwards). Passes when the max abs difference
    relative to device_a's max abs entry is within :func:`jacobian_tolerance`, and A_y y = f(y) on
    each device within the same tolerance."""
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        sides, homogeneity, seconds = [], [], []
        for device, model in ((device_a, generator), (device_b, other or generator)):
            model, y = copy.deepcopy(model).to(device).eval(), masked.to(device)
            start = time.perf_counter()
            sides.append(jacobian(model, y).cpu())
            seconds.append(time.perf_counter() - start)
            homogeneity.append(homogeneity_error(model, y))
            with torch.no_grad():
                code = model.encoder(y[None]).numel()  # the same on both sides
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
    a, b = sides
    difference = ((a - b).abs().max() / a.abs().max()).item()
    terms = reduction_terms(generator, code)
    tolerance = jacobian_tolerance(terms, a.numel())
    problems = [] if difference <= tolerance else [  # NaN fails too
        f"Jacobians differ by {difference:.3g} of the largest entry, above the tolerance {tolerance:.3g}"]
    problems += [f"A_y y - f(y) is {h:.3g} of f(y) on {device}, above {tolerance:.3g}"
                 for device, h in zip((device_a, device_b), homogeneity) if not h <= tolerance]
    return verdict({
        "devices": [device_a, device_b],
        "shape": list(a.shape),
        "dtype": "float32",
        "relative_difference": difference,
        "definition": "max |A_a - A_b| / max |A_a|",
        "tolerance": tolerance,
        "tolerance_rule": f"eps_float32 * sqrt({terms} products per entry) * sqrt(2 devices) "
                          f"* sqrt(2 ln {a.numel()} entries)",
        "homogeneity": homogeneity,
        "homogeneity_definition": "||A_y y - f(y)|| / ||f(y)|| on each device (forward mode), within the tolerance",
        "tf32": "disabled for the check (torch.backends.cuda.matmul.allow_tf32 = "
                "torch.backends.cudnn.allow_tf32 = False)",
        "jacobian_seconds": seconds,
    }, problems)


def calibrated_generator(
    mask_size: int = 64, base_channels: int = 16, bottleneck: int = 256, image_size: int = 128, seed: int = 0
) -> ContextEncoder:
    """A small bias-free Context Encoder in eval mode whose batch-norm statistics are those of one
    batch of random masked images (momentum 1 for that one train-mode forward), so its activations
    are scaled as a trained model's are rather than shrinking layer by layer."""
    torch.manual_seed(seed)
    generator = ContextEncoder(mask_size, image_size=image_size, base_channels=base_channels, bottleneck=bottleneck)
    norms = [m for m in generator.modules() if hasattr(m, "momentum")]
    for norm in norms:
        norm.momentum = 1.0
    with torch.no_grad():
        generator(generator.mask_input(torch.rand(8, 3, image_size, image_size)))
    for norm in norms:
        norm.momentum = 0.1
    return generator.eval()


def jacobian_step() -> dict:
    """:func:`compare_jacobians` of a :func:`calibrated_generator` on the CPU and on ``cuda``."""
    generator = calibrated_generator()
    masked = generator.mask_input(torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1)))[0]
    start = time.perf_counter()
    result = compare_jacobians(generator, masked, "cpu", "cuda")
    command = "compare_jacobians(ContextEncoder(64, base_channels=16, bottleneck=256), masked, 'cpu', 'cuda')"
    return {"command": command, **result, "seconds": time.perf_counter() - start}


def table(results: dict) -> str:
    """One line per step: its name, ok / FAIL, seconds and its key figure (the reason when it failed)."""
    lines = [f"{'step':<10}{'':<6}{'seconds':>8}  key figure"]
    for name, step in results["steps"].items():
        if "relative_difference" in step:
            parts = [f"A_y cpu vs cuda {step['relative_difference']:.2e} of max (tolerance {step['tolerance']:.2e})"]
        elif "ratios" in step:
            efficiency = step.get("efficiency") or {}
            parts = [(f"{c} {r:.2f}x" if isinstance(r, (int, float)) else f"{c} -")
                     + (f" ({efficiency[c]:.0%} of peak)" if isinstance(efficiency.get(c), (int, float)) else "")
                     for c, r in step["ratios"].items()]
        else:
            shown = (("PSNR", "psnr", 2), ("SSIM", "ssim", 3), ("Telea", "telea_psnr", 2))
            parts = [f"{label} {step[key]:.{digits}f}" for label, key, digits in shown
                     if isinstance(step.get(key), (int, float))]
            parts += [step["precision"]] if step.get("precision") else []
        figure = ", ".join(parts) + ("" if step["ok"] else f"  [{step['reason']}]")
        seconds = f"{step['seconds']:8.1f}" if isinstance(step.get("seconds"), (int, float)) else f"{'-':>8}"
        lines.append(f"{name:<10}{'ok' if step['ok'] else 'FAIL':<6}{seconds}  {figure}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu_check.json", help="the JSON of every step (default: gpu_check.json)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds for all steps together (default 300); "
                        "each subprocess gets what is left, so the JSON is written before an outer limit")
    parser.add_argument("--dir", help="keep the runs' folders in a new folder under DIR "
                        "(default: a temporary one, removed afterwards)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        build = "a CPU build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        print(f"gpu_check: no CUDA GPU here (torch {torch.__version__}, {build}); nothing checked, nothing written.")
        return 0

    gpus = torch.cuda.device_count()
    results: dict = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpus": [capabilities(f"cuda:{i}").as_dict() for i in range(gpus)],
        "steps": {},
    }
    deadline = time.perf_counter() + args.timeout

    def left() -> float:
        return deadline - time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="gpu_check_") as scratch:
        folder = Path(scratch)
        if args.dir:  # a new folder in it, so no earlier run's files are read back as this one's
            Path(args.dir).mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix="gpu_check_", dir=args.dir)).resolve()
            results["runs_folder"] = str(folder)
        steps = {
            "jacobian": jacobian_step,
            "smoke": lambda: train_step(folder / "smoke", ["experiment=smoke", "trainer=gpu"], left()),
            "ddp": lambda: train_step(folder / "ddp", ["experiment=smoke", "trainer=ddp", f"trainer.devices={gpus}"],
                                      left()),
            "demo": lambda: train_step(folder / "demo", ["experiment=demo"], left()),
            "bench": lambda: bench_step(folder / "bench.json", left()),
        }
        if gpus < 2:
            del steps["ddp"]
        for name, step in steps.items():
            start = time.perf_counter()
            try:
                results["steps"][name] = step()
            except Exception as error:  # a broken step is a failed entry: the others still run
                error_line = f"{type(error).__name__}: {error}"
                results["steps"][name] = verdict({"seconds": time.perf_counter() - start}, [error_line])
            results["ok"] = all(s["ok"] for s in results["steps"].values())
            Path(args.out).write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"{'all steps passed' if results['ok'] else 'some steps FAILED'}; details in {args.out}")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
