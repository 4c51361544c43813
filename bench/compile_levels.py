"""Compile and run time of the programs a run calls once (init, warmup) or once per evaluation
(evaluate) at XLA CPU's default optimisation level and at level 0, side by side in one process,
and how far their outputs differ: the measurement behind ``jit_once`` (level 0 for init and
warmup on CPU; evaluate stays at the default level, see ``evaluate_break_even``).

Each config (a preset, one seed): one throwaway compile first (the process's one-time costs),
then the three programs are compiled at both levels over ``--rounds`` rounds with fresh
functions (no cache hit), the order of the levels alternating, and each compiled program run 3
times (init -> warmup -> evaluate); medians. ``max_abs_diff``: the largest difference between
the two levels' outputs (the runner state after warmup and the evaluation's returns).
``evaluate_break_even``: after how many evaluations level 0's slower evaluation costs more than
its compile saves.

  python bench/compile_levels.py --out bench/measured/cpu-2026-12-07/compile_levels.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import jax
import numpy as np

from meharl.config import resolve
from meharl.experiment import Experiment
from meharl.runners.offpolicy import over_seeds

CONFIGS = [
    {"algo": "hasac", "env": "mpe/simple_spread"},
    {"algo": "hatd3", "env": "mpe/simple_spread"},
    {"algo": "qmix", "env": "mpe/simple_spread_discrete"},
    {"algo": "hasac", "env": "smax/3m"},
    {"algo": "happo", "env": "smax/3m"},
    {"algo": "qmix", "env": "smax/3m"},
]
PROGRAMS = ("init", "warmup", "evaluate")


def one_level(exp, level):
    """Compile the three programs at ``level`` (None: XLA's default) and run them; returns
    (compile seconds, run seconds per program, outputs)."""
    loop, keys, n = exp.runner, exp.seed_keys(), len(exp.cfg.seeds)
    opts = None if level is None else {"xla_backend_optimization_level": level}
    jitted = {name: jax.jit(over_seeds(getattr(loop, name), n), compiler_options=opts) for name in PROGRAMS}
    rs = jax.eval_shape(jitted["init"], keys)
    args = {"init": (keys,), "warmup": (rs,), "evaluate": (rs.algo, exp.eval_keys(0))}
    compiled, compile_s = {}, {}
    for name in PROGRAMS:
        t = time.perf_counter()
        compiled[name] = jitted[name].lower(*args[name]).compile()
        compile_s[name] = time.perf_counter() - t
    run_s = {name: [] for name in PROGRAMS}
    for _ in range(3):
        t = time.perf_counter()
        rs = jax.block_until_ready(compiled["init"](keys))
        run_s["init"].append(time.perf_counter() - t)
        t = time.perf_counter()
        rs = jax.block_until_ready(compiled["warmup"](rs))
        run_s["warmup"].append(time.perf_counter() - t)
        t = time.perf_counter()
        ev = jax.block_until_ready(compiled["evaluate"](rs.algo, exp.eval_keys(0)))
        run_s["evaluate"].append(time.perf_counter() - t)
    return compile_s, {k: statistics.median(v) for k, v in run_s.items()}, (rs, ev)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    results = []
    for overrides in CONFIGS:
        exp = Experiment(resolve(overrides), tempfile.mkdtemp(), quiet=True)
        one_level(exp, None)
        samples = {"default": [], "O0": []}
        outputs = {}
        for r in range(args.rounds):
            for tag, level in (("default", None), ("O0", 0))[:: 1 if r % 2 == 0 else -1]:
                compile_s, run_s, out = one_level(exp, level)
                samples[tag].append((compile_s, run_s))
                outputs[tag] = out
        row = {"config": overrides}
        for tag, s in samples.items():
            row[tag] = {
                **{f"{k}_compile_s": round(statistics.median(c[k] for c, _ in s), 2) for k in PROGRAMS},
                **{f"{k}_run_s": round(statistics.median(r[k] for _, r in s), 4) for k in PROGRAMS},
            }
            row[tag]["compile_s"] = round(sum(row[tag][f"{k}_compile_s"] for k in PROGRAMS), 2)
        diffs = [float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)), initial=0.0))
                 for a, b in zip(jax.tree.leaves(outputs["default"]), jax.tree.leaves(outputs["O0"]))]
        row["max_abs_diff"] = max(diffs)
        row["compile_ratio"] = round(row["O0"]["compile_s"] / row["default"]["compile_s"], 3)
        saved = row["default"]["evaluate_compile_s"] - row["O0"]["evaluate_compile_s"]
        row["evaluate_break_even"] = round(saved / max(row["O0"]["evaluate_run_s"] - row["default"]["evaluate_run_s"], 1e-9), 1)
        print(json.dumps(row), flush=True)
        results.append(row)
    with open(args.out, "w") as f:
        json.dump({"rounds": args.rounds, "jax": jax.__version__, "results": results}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
