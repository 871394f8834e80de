"""``python -m benchmarks [--quick] [--out FILE] [--only train,jacobian,pca,data]``: run the cases,
print a table and write the results as JSON."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import time
import warnings

import torch

from benchmarks.cases import CASES


def table(results: dict) -> str:
    """One line per case: the headline figures and their ratio."""
    headline = {
        "train": ("reference_images_per_s", "best_images_per_s", "img/s"),
        "jacobian": ("loop_seconds_extrapolated", "full_seconds", "s"),
        "pca": ("sklearn_seconds", "ours_seconds", "s"),
        "data": ("jpeg_images_per_s", "cache_images_per_s", "img/s"),
    }
    lines = [f"{'case':<10}{'reference':>14}{'ours':>14}  {'unit':<6}{'ratio':>8}"]
    for name, (ref, ours, unit) in headline.items():
        if name in results:
            r = results[name]
            cells = [f"{v:14.3f}" if isinstance(v, float) else f"{v!s:>14}" for v in (r[ref], r[ours])]
            ratio = f"{r['ratio']:8.2f}" if r["ratio"] is not None else f"{'-':>8}"
            lines.append(f"{name:<10}{cells[0]}{cells[1]}  {unit:<6}{ratio}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (< 3 min on 2 cores)")
    parser.add_argument("--out", help="write the results here as JSON")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(CASES)}")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(CASES)
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    results: dict = {
        "device": "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": args.quick,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    for name in names:
        start = time.perf_counter()
        results[name] = CASES[name](args.quick)
        print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)
    print(table(results))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
