"""How host-stepped envs are best stepped: in this process (`vector_env=sync`), or by worker
processes (`vector_env=async`) that each step a share of the envs (`env_workers`, 0 = one per
usable core), one per env as Gymnasium's AsyncVectorEnv and HARL do (`env_workers` = envs).

For each setting and each CPU-core budget (the benchmark process and its workers pinned to the
first k cores), one training iteration of the given config (its rollout stepped on the host and
its update) is compiled, then timed over ``--iters`` calls, and an evaluation (``eval_episodes``
whole episodes per seed) is run once, then timed; medians over ``--rounds`` rounds, settings alternating within a round.

  python bench/host_vector_env.py --cores 1,2 --out bench/measured/cpu-2026-12-07/host_vector_env.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SETTINGS = {"sync": {"vector_env": "sync"}, "async_pooled": {"vector_env": "async", "env_workers": 0},
            "async_per_env": {"vector_env": "async", "env_workers": 10_000}}


def measure(overrides: dict, iters: int) -> dict:
    """One setting, in this process (pinned by the caller)."""
    import jax

    from meharl.config import resolve
    from meharl.experiment import Experiment

    exp = Experiment(resolve(overrides), "/tmp/meharl_host_vector_env", quiet=True)
    try:
        rs = exp.loop.warmup(exp.loop.init(exp.seed_keys()))
        rs, _ = exp.loop.chunk(rs, 1)  # compiles
        jax.block_until_ready(rs)
        t0 = time.perf_counter()
        for _ in range(iters):
            rs, _ = exp.loop.chunk(rs, 1)
        jax.block_until_ready(rs)
        train_s = time.perf_counter() - t0
        exp.loop.evaluate(rs.algo, exp.eval_keys(0))  # compiles the greedy act, starts the evaluation's envs
        t0 = time.perf_counter()
        returns, _ = exp.loop.evaluate(rs.algo, exp.eval_keys(1))
        eval_s = time.perf_counter() - t0
        steps = iters * exp.schedule.block_env_steps * len(exp.cfg.seeds)
        eval_steps = returns.size * exp.runner.spec.max_steps  # MaMuJoCo: every episode runs to its limit
        return {"train_env_steps_per_s": steps / train_s, "train_s_per_iteration": train_s / iters,
                "eval_s": eval_s, "eval_env_steps_per_s": eval_steps / eval_s}
    finally:
        exp.runner.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algo", default="happo")
    p.add_argument("--env", default="mamujoco/HalfCheetah-2x3")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--cores", default="1,2", help="core budgets to pin to, e.g. 1,2")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--out", required=True)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    base = {"algo": args.algo, "env": args.env, "seeds": args.seeds, "eval_episodes": args.eval_episodes}
    if args.child:  # one measurement, printed as JSON
        print(json.dumps(measure({**base, **SETTINGS[args.child]}, args.iters)))
        return
    results = {"config": base, "iters": args.iters, "rounds": args.rounds, "cpu_count": os.cpu_count(), "runs": {}}
    for cores in [int(c) for c in args.cores.split(",")]:
        pin = ["taskset", "-c", f"0-{cores - 1}"]
        for name in SETTINGS:
            results["runs"].setdefault(f"{cores}_cores", {})[name] = []
        for _ in range(args.rounds):
            for name in SETTINGS:
                out = subprocess.run([*pin, sys.executable, __file__, "--child", name, *sys.argv[1:]],
                                     capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                results["runs"][f"{cores}_cores"][name].append(r)
                print(cores, "cores", name, r, flush=True)
    summary = {c: {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in by.items()}
               for c, by in results["runs"].items()}
    results["median"] = summary
    for c, by in summary.items():
        for name, m in by.items():
            print(f"{c:8s} {name:14s} train {m['train_env_steps_per_s']:8.0f} env steps/s  "
                  f"({m['train_s_per_iteration']:.2f} s/iteration)  eval {m['eval_env_steps_per_s']:8.0f} env steps/s")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
