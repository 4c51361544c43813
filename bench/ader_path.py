"""ADER's path game (Figure 2): HASAC with one fixed target entropy for both agents (SER-MARL)
against HASAC with ADER's adaptive per-agent target entropies, five seeds each, the path-game
preset (H_0 = -2, alpha_init e^-2, 20k steps).

    python bench/ader_path.py --out bench/measured/cpu-2026-12-06/ader_path.json

Per seed: the final greedy return, whether the greedy position is past the junction (reward
above 2.5) and in the circle (4.79, the reward at its edge), and for ADER whether the target
entropies order as Figure 2(b) (H_1 > H_2 exactly while the position is before the junction) in
every row of the first 8k steps.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from meharl.experiment import package_versions, train

CIRCLE_EDGE = 5.0 * (1.0 - 0.05 / 1.2)
CONFIGS = {
    "ser_marl": {},
    "ader": {"ader": True},
    "ader_temperature_0.1": {"ader": True, "ader_temperature": 0.1},
    "ader_code_ema": {"ader": True, "ader_temperature": 0.1, "ader_xi": 0.1},
}


def summarise(rows, seeds, adaptive):
    out = []
    for seed in seeds:
        mine = [r for r in rows if r["seed"] == seed]
        final = mine[-1]["eval_return_mean"]
        entry = {"seed": seed, "final_return": round(final, 3), "past_junction": final > 2.5,
                 "in_circle": final >= CIRCLE_EDGE, "best_return": round(max(r["eval_return_mean"] for r in mine), 3)}
        if adaptive:
            early = [r for r in mine if "target_entropy_0" in r and r["env_steps"] <= 8_000]
            entry["figure_2b_order"] = all((r["eval_return_mean"] < 2.5) == (r["target_entropy_0"] > r["target_entropy_1"])
                                           for r in early)
        out.append(entry)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--steps", type=int, default=20_000)
    args = ap.parse_args()
    seeds = tuple(int(s) for s in args.seeds.split(","))
    results = {}
    for name, overrides in CONFIGS.items():
        t = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            exp = train({"algo": "hasac", "env": "matrix/ader_path", "seeds": seeds, "total_steps": args.steps,
                         "eval_interval": 1_000, **overrides}, run_dir=tmp, quiet=True)
        per_seed = summarise(exp.rows, seeds, overrides.get("ader", False))
        results[name] = {"overrides": overrides, "seeds": per_seed, "wall_s": round(time.perf_counter() - t, 1),
                         "past_junction": sum(s["past_junction"] for s in per_seed),
                         "in_circle": sum(s["in_circle"] for s in per_seed)}
        print(name, {k: v for k, v in results[name].items() if k != "seeds"},
              [s["final_return"] for s in per_seed], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command": "python bench/ader_path.py --out " + args.out,
                                          "total_steps": args.steps, "versions": package_versions(),
                                          "results": results}, indent=1))


if __name__ == "__main__":
    main()
