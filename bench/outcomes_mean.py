"""The win rate of several `bench/smax_outcomes.py` results taken together: each file's
``won`` per policy and their mean, the number docs/benchmarks.md quotes for "the last 100k
steps' policies on 1000 battles" (one file per kept checkpoint, 900k/950k/990k/1M).

Usage:
  python bench/outcomes_mean.py OUTCOMES.json [OUTCOMES.json ...] [--out mean.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def outcomes_mean(paths):
    """{policy: {"per_file": {path: won}, "mean": mean won}}; every file must hold the same policies."""
    results = {p: json.loads(Path(p).read_text()) for p in paths}
    policies = list(dict.fromkeys(k for r in results.values() for k, v in r.items() if isinstance(v, dict) and "won" in v))
    missing = {p: [k for k in policies if k not in r] for p, r in results.items()}
    if any(missing.values()):
        raise SystemExit("files differ in their policies: "
                         + "; ".join(f"{p} lacks {', '.join(ks)}" for p, ks in missing.items() if ks))
    won = {k: {p: r[k]["won"] for p, r in results.items()} for k in policies}
    return {k: {"per_file": w, "mean": sum(w.values()) / len(w)} for k, w in won.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    ap.add_argument("paths", nargs="+", help="JSON files written by bench/smax_outcomes.py --out")
    ap.add_argument("--out", default=None, help="also write the result as JSON here")
    a = ap.parse_args()
    result = outcomes_mean(a.paths)
    for policy, r in result.items():
        print(f"{policy:24s} " + " ".join(f"{100 * w:.1f}" for w in r["per_file"].values())
              + f"  mean {100 * r['mean']:.2f}% over {len(a.paths)} files")
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
