"""Compare algorithms on one task: every algorithm with its preset for the task, the same
budget and seeds (trained together, vmapped), then final and late-window scores with 95%
t-intervals over seeds, training speed, and one plot with every algorithm's curve.

  python bench/compare.py --env mpe/simple_spread --algos happo,hatrpo,haa2c,mappo \\
      --steps 2000000 --seeds 0,1,2 --out-dir bench/measured/cpu-2026-12-06/compare_mpe_simple_spread

Writes OUT_DIR/compare.json ({algo: {final, late, env_steps_per_s, updates_per_s (all seeds), compile_and_first_chunk_s,
wall_s, overrides}}), OUT_DIR/compare.png and keeps each run directory under OUT_DIR/runs/.
Run again with other --algos (same task, steps, seeds), it adds them to OUT_DIR's comparison.
Extra key=value arguments override every algorithm's config (a key an algorithm does not own
is an error, as on the command line).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from meharl.config import parse_overrides, resolve
from meharl.envs import headline_metric
from meharl.experiment import Experiment
from meharl.plotting import plot_runs, summarize


def main():
    p = argparse.ArgumentParser(allow_abbrev=False)
    p.add_argument("--env", required=True)
    p.add_argument("--algos", default="happo,hatrpo,haa2c,mappo")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--late", type=float, default=0.2, help="the late window: this last fraction of the budget")
    p.add_argument("--out-dir", required=True)
    p.add_argument("overrides", nargs="*")
    a = p.parse_args()
    out = Path(a.out_dir)
    extra = parse_overrides(a.overrides)
    configs = {algo: resolve({"algo": algo, "env": a.env, "total_steps": a.steps, "seeds": a.seeds, **extra})
               for algo in a.algos.split(",")}  # every config is validated before anything trains
    metric = headline_metric(a.env)
    window = (int(a.steps * (1 - a.late)), a.steps)
    # a comparison extended by more algorithms keeps the ones measured before (same task, budget, seeds)
    results, run_dirs, done = {}, [], out / "compare.json"
    if done.exists():
        before = json.loads(done.read_text())
        if (before["env"], before["steps"], before["seeds"]) == (a.env, a.steps, a.seeds):
            results = {k: v for k, v in before["results"].items() if k not in configs}
            run_dirs = [str(out / "runs" / k) for k in results]
    for algo, cfg in configs.items():
        run_dir = out / "runs" / algo
        exp = Experiment(cfg, run_dir, quiet=True)
        t0 = time.perf_counter()
        exp.run()
        wall = time.perf_counter() - t0
        steady = exp.timings[1:]
        blocks, seconds = sum(n for n, _ in steady), sum(s for _, s in steady)
        stats = summarize(str(run_dir), metric, window)
        results[algo] = {
            "final": stats["final"], "late": stats["window"], "metric": metric,
            "env_steps_per_s": blocks * exp.schedule.block_env_steps * len(cfg.seeds) / seconds if seconds else None,
            "updates_per_s": blocks * exp.schedule.updates_per_block * len(cfg.seeds) / seconds if seconds else None,
            "compile_and_first_chunk_s": exp.timings[0][1], "wall_s": wall,
            "overrides": {k: str(v) for k, v in extra.items()},
        }
        run_dirs.append(str(run_dir))
        print(json.dumps({algo: results[algo]}), flush=True)
        # after every algorithm, so that a comparison stopped part way keeps what it measured
        plot_runs(run_dirs, out / "compare.png", metric, list(results))
        (out / "compare.json").write_text(json.dumps({"env": a.env, "steps": a.steps, "seeds": a.seeds,
                                                      "late_window": window, "results": results}, indent=1))


if __name__ == "__main__":
    main()
