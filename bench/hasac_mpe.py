"""HASAC on MPE simple_spread (continuous) with its preset (meharl/config.py; the papers' MPE
settings are `mpe_action_map=reference n_step=20 critic_layer_norm=false gamma=0.99`).

Reports, as JSON (stdout and --out):
  env_steps_per_s      env steps / training wall time (compilation excluded, see below)
  updates_per_s        gradient updates / training wall time, end to end
  learner_updates_per_s  a jitted scan of updates alone on the same state (the learner limit)
  ref_updates_per_s    ../shared/bench/ref_hasac_update.py's update, timed in this process in
                       rounds alternating with ours (learner_updates_per_s)
  overhead_fraction    1 - (updates / learner_updates_per_s) / training wall: the share of wall
                       time that is not gradient updates (env stepping, inserts, evaluation, logging)
  eval_return          final deterministic eval return per seed and mean (40 episodes)
  seed_scaling         optional: wall time of the same short run with S seeds / with 1 seed

Usage:
  python bench/hasac_mpe.py --steps 1000000 --seeds 0,1,2 --out bench/out/hasac_mpe.json
  python bench/hasac_mpe.py --steps 100000 --seeds 0 --scaling 3
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

from meharl.config import resolve
from meharl.experiment import Experiment
from meharl.runners.offpolicy import over_seeds

REF = Path(__file__).resolve().parents[1].parent / "shared" / "bench" / "ref_hasac_update.py"


def timed_run(overrides, run_dir, resume=False):
    """Train (from run_dir's checkpoint if resume); return the experiment, its rows, and the
    steady-state wall time and blocks (every chunk of this process after its first, which
    includes XLA compilation)."""
    exp = Experiment(resolve(overrides), run_dir, quiet=True)
    t0 = time.perf_counter()
    rows = exp.run(resume=resume)
    total = time.perf_counter() - t0
    steady_blocks = sum(n for n, _ in exp.timings[1:])
    steady_s = sum(s for _, s in exp.timings[1:])
    return exp, rows, dict(total_s=total, steady_s=steady_s, steady_blocks=steady_blocks)


def learner_and_ref_rates(exp, rounds=8, k=50):
    """Updates/s of our compiled update loop (replay sampling included, on the trained state,
    in place as in training) and of the reference update (../shared/bench/ref_hasac_update.py,
    its update function run in this process), timed in alternating rounds so that both see
    the same machine; medians over the rounds."""
    r = exp.runner

    def many(rs):
        return jax.lax.scan(r._update, rs, None, k)[0]

    ours = jax.jit(over_seeds(many, len(exp.cfg.seeds)), donate_argnums=0)
    ref, argv = {}, sys.argv
    sys.argv = [str(REF)]  # it reads sizes from its command line; ours are its defaults
    try:
        exec(compile(REF.read_text().split("K = 50")[0], str(REF), "exec"), ref)  # its setup, not its timing
    finally:
        sys.argv = argv
    ref_many = jax.jit(lambda st, key: jax.lax.scan(lambda s, kk: (ref["update"](s, kk), None), st,
                                                    jax.random.split(key, k))[0])
    rs, st = ours(exp.state), ref_many(ref["state"], jax.random.PRNGKey(0))
    jax.block_until_ready((rs, st))
    times = {"ours": [], "ref": []}
    for i in range(rounds):
        t = time.perf_counter()
        rs = jax.block_until_ready(ours(rs))
        times["ours"].append(time.perf_counter() - t)
        t = time.perf_counter()
        st = jax.block_until_ready(ref_many(st, jax.random.PRNGKey(i)))
        times["ref"].append(time.perf_counter() - t)
    return k / statistics.median(times["ours"]), k / statistics.median(times["ref"])


def main():
    p = argparse.ArgumentParser(allow_abbrev=False)
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--seeds", default="0")
    p.add_argument("--env", default="mpe/simple_spread")
    p.add_argument("--scaling", type=int, default=0, help="also time a short run with this many seeds vs 1")
    p.add_argument("--scaling-steps", type=int, default=60_000)
    p.add_argument("--out", default="bench/out/hasac_mpe.json")
    p.add_argument("--run-dir", default="bench/out/run")
    p.add_argument("overrides", nargs="*")
    a = p.parse_args()
    from meharl.config import parse_overrides

    overrides = {"env": a.env, "total_steps": a.steps, "seeds": a.seeds, **parse_overrides(a.overrides)}
    result = {"env": a.env, "steps": a.steps, "seeds": a.seeds, "overrides": a.overrides, "cpu_count": __import__("os").cpu_count()}
    exp, rows, t = timed_run(overrides, a.run_dir)
    sch, n_seeds = exp.schedule, len(exp.cfg.seeds)
    updates = t["steady_blocks"] * sch.updates_per_block  # per seed
    env_steps = t["steady_blocks"] * sch.block_env_steps * n_seeds
    learner, ref = learner_and_ref_rates(exp)
    final = {r["seed"]: r["eval_return_mean"] for r in rows if r["env_steps"] == rows[-1]["env_steps"]}
    result.update(
        timing=t,
        env_steps_per_s=env_steps / t["steady_s"],
        updates_per_s=updates * n_seeds / t["steady_s"],
        learner_updates_per_s=learner * n_seeds,
        ref_updates_per_s=ref,
        updates_vs_ref=updates * n_seeds / t["steady_s"] / ref,
        learner_vs_ref=learner * n_seeds / ref,
        overhead_fraction=1 - (updates / learner) / t["steady_s"],
        eval_return={"per_seed": final, "mean": float(np.mean(list(final.values())))},
        curve=[{k: r[k] for k in ("seed", "env_steps", "eval_return_mean")} for r in rows],
    )
    if a.scaling:
        walls = {}
        for s in (1, a.scaling):
            seeds = ",".join(str(i) for i in range(s))
            _, _, ts = timed_run({**overrides, "total_steps": a.scaling_steps, "seeds": seeds}, f"{a.run_dir}_scaling{s}")
            walls[s] = ts["steady_s"]
        result["seed_scaling"] = {"seeds": a.scaling, "wall_1": walls[1], f"wall_{a.scaling}": walls[a.scaling],
                                  "ratio": walls[a.scaling] / walls[1]}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}, indent=1))


if __name__ == "__main__":
    main()
