"""HASAC learning benchmarks on the papers' environments: train with the task's preset for a
given number of env steps and report speed and the evaluation curve.

Writes, per environment, JSON (stdout and --out) with
  env_steps_per_s, updates_per_s   steady state (after the first, compiling chunk), all seeds
  eval_return                      final deterministic eval return per seed and mean
  eval_win_rate                    final win rate per seed and mean (SMAX)
  curve                            every evaluation: seed, env_steps, eval_return_mean, eval_win_rate
  wall_s                           total wall time including compilation
  resumed_at                       env steps the run had when this process started (0: a fresh run);
                                   the speeds and wall_s cover this process only
and the run's learning-curve PNG next to the JSON. --resume continues OUT_DIR/run_<env> from its
last checkpoint (the same overrides; a larger --steps extends a finished run).

Usage (targets of the issue in brackets):
  python bench/hasac_train.py --env mamujoco/HalfCheetah-2x3 --steps 1000000 --seeds 0,1,2   [return >= 3000]
  python bench/hasac_train.py --env smax/3m,smax/2s3z --steps 1000000 --seeds 0               [3m: win >= 90%]
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from hasac_mpe import timed_run  # same folder

from meharl.config import parse_overrides


def bench(env: str, steps: int, seeds: str, overrides: dict, out_dir: Path, resume: bool = False) -> dict:
    name = env.replace("/", "_")
    exp, rows, t = timed_run({"env": env, "total_steps": steps, "seeds": seeds, **overrides}, out_dir / f"run_{name}", resume)
    sch, n_seeds = exp.schedule, len(exp.cfg.seeds)
    last = [r for r in rows if r["env_steps"] == rows[-1]["env_steps"]]
    trained_here = sum(n for n, _ in exp.timings)  # blocks this process trained
    # per second over this process's chunks after its first (None: one chunk, all of it compiling)
    rate = lambda per_block: t["steady_blocks"] * per_block * n_seeds / t["steady_s"] if t["steady_s"] else None
    result = {
        "env": env, "steps": steps, "seeds": seeds, "overrides": overrides, "wall_s": t["total_s"],
        "resumed_at": sch.env_steps(sch.blocks - trained_here, exp.cfg.n_envs) if trained_here < sch.blocks else 0,
        "env_steps_per_s": rate(sch.block_env_steps), "updates_per_s": rate(sch.updates_per_block),
        "eval_return": {"per_seed": {r["seed"]: r["eval_return_mean"] for r in last},
                        "mean": float(np.mean([r["eval_return_mean"] for r in last]))},
        "eval_win_rate": {"per_seed": {r["seed"]: r["eval_win_rate"] for r in last},
                          "mean": float(np.mean([r["eval_win_rate"] for r in last]))},
        "curve": [{k: r[k] for k in ("seed", "env_steps", "eval_return_mean", "eval_win_rate")} for r in rows],
    }
    (out_dir / f"hasac_{name}.json").write_text(json.dumps(result, indent=1))
    shutil.copy(exp.run_dir / "learning_curve.png", out_dir / f"hasac_{name}.png")
    return result


def main():
    p = argparse.ArgumentParser(allow_abbrev=False)
    p.add_argument("--env", default="mamujoco/HalfCheetah-2x3", help="comma-separated environments")
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--seeds", default="0")
    p.add_argument("--out-dir", default="bench/out")
    p.add_argument("--resume", action="store_true",
                   help="continue OUT_DIR/run_<env> from its last checkpoint instead of starting afresh")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    a = p.parse_args()
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for env in a.env.split(","):
        result = bench(env, a.steps, a.seeds, parse_overrides(a.overrides), out_dir, a.resume)
        print(json.dumps({k: v for k, v in result.items() if k != "curve"}))


if __name__ == "__main__":
    main()
