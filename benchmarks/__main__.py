"""``python -m benchmarks [--quick] [--device cpu|cuda] [--out FILE] [--only train,jacobian,pca,data,pca_head,unet,unet_jacobian,exemplar,explorer]``:
run the cases, print a table and write the results as JSON."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import time
import warnings

import torch

from benchmarks.cases import CASES
from inpaint.hardware import capabilities


def table(results: dict) -> str:
    """One line per case: the headline figures, their ratio and our efficiency (of the device's peak)."""
    headline = {  # row: (case, reference, ours, unit, ratio, our efficiency)
        "train": ("train", "reference_images_per_s", "best_images_per_s", "img/s", "ratio", "best_efficiency"),
        "jacobian": ("jacobian", "loop_seconds_extrapolated", "full_seconds", "s", "ratio", "efficiency"),
        "pca": ("pca", "sklearn_seconds", "ours_seconds", "s", "ratio", "efficiency"),
        "data": ("data", "jpeg_images_per_s", "cache_images_per_s", "img/s", "ratio", None),
        "folder": ("data", "folder_decode_images_per_s", "folder_cache_images_per_s", "img/s", "folder_ratio", None),
        # beside the Context Encoder (reference column), not against a slower path
        "unet": ("unet", "context_encoder_images_per_s", "unet_images_per_s", "img/s", "ratio", "unet_efficiency"),
        "unet A_y": ("unet_jacobian", "compute_bound_total_seconds", "total_seconds", "s", "ratio", "efficiency"),
        "exemplar": ("exemplar", "exhaustive_seconds", "ours_seconds", "s", "ratio", None),
    }
    # the explorer's click at three widths, against its budget (reference column)
    headline.update({f"click {w.replace('context_encoder', 'CE')}": (("explorer", w), "budget_seconds", "click_seconds", "s", "ratio", "efficiency")
                     for w in ("context_encoder_demo", "context_encoder_paper", "unet_demo")})
    lines = [f"{'case':<16}{'reference':>14}{'ours':>14}  {'unit':<6}{'ratio':>8}{'ours eff.':>11}"]
    for name, (case, ref, ours, unit, ratio_key, efficiency) in headline.items():
        case, part = case if isinstance(case, tuple) else (case, None)
        if case in results:
            r = results[case] if part is None else results[case][part]
            cells = [f"{v:14.3f}" if isinstance(v, float) else f"{v!s:>14}" for v in (r[ref], r[ours])]
            ratio = f"{r[ratio_key]:8.2f}" if r[ratio_key] is not None else f"{'-':>8}"
            eff = f"{r[efficiency]:11.0%}" if efficiency else f"{'-':>11}"
            lines.append(f"{name:<16}{cells[0]}{cells[1]}  {unit:<6}{ratio}{eff}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the demo's width, fewer steps and repeats (< 3 min on 2 cores)")
    parser.add_argument("--out", help="write the results here as JSON")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(CASES)}")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N: where training, the Jacobian and our PCA run")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(CASES)
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device}: not a device name; use cpu, cuda or cuda:N")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device {args.device}: the benchmarks run on cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device (a CPU build, or no GPU here); "
                     f"install a CUDA build of torch on a GPU machine, or leave --device out")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        parser.error(f"--device {args.device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    caps = capabilities(device)
    results: dict = {
        "device": args.device,
        "device_name": caps.name,
        "capabilities": caps.as_dict(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": args.quick,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    for name in names:
        start = time.perf_counter()
        results[name] = CASES[name](args.quick, args.device)
        print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)
    print(table(results))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
