"""A sweep of 8 short runs with ``--workers 2`` against the same 8 runs as separate
``meharl train`` processes one after another, side by side in one invocation.

    python bench/sweep_workers.py --out bench/measured/cpu-2026-12-06/sweep_workers.json

The 8 runs: HASAC on the HASAC matrix game at 8 temperatures, 2 seeds each, 3000 steps.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from meharl.experiment import package_versions

ALPHAS = ["0.5", "1", "2", "3", "5", "7", "10", "20"]
COMMON = ["algo=hasac", "env=matrix/hasac_3x3", "seeds=0,1", "total_steps=3000"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    cli = [sys.executable, "-m", "meharl.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        for a in ALPHAS:
            subprocess.run([*cli, "train", *COMMON, f"alpha={a}", "--run-dir", f"{tmp}/train_{a}"], check=True,
                           capture_output=True)
        one_by_one = time.perf_counter() - t
        t = time.perf_counter()
        subprocess.run([*cli, "sweep", *COMMON, "alpha=" + ",".join(ALPHAS), "--workers", str(args.workers),
                        "--dir", f"{tmp}/sweep"], check=True, capture_output=True)
        sweep = time.perf_counter() - t
    result = {"command": f"python bench/sweep_workers.py --out {args.out}", "runs": len(ALPHAS),
              "config": COMMON, "one_by_one_s": round(one_by_one, 1), f"sweep_workers_{args.workers}_s": round(sweep, 1),
              "speedup": round(one_by_one / sweep, 2), "versions": package_versions()}
    print(json.dumps(result))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
