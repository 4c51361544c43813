"""Training speed against the peers, side by side in one process on this machine.

Pairs (same algorithm, task and settings):
  HATD3 on simple_spread (continuous), HAD3QN on simple_spread (discrete), HARL's tuned MPE
      settings (20 envs, train_interval 50, batch 1000, [128, 128]): meharl vs HARL's own PyTorch
      code. HARL's time includes its 10k warmup steps of random actions (faster than training steps,
      which favours HARL) and one evaluation.
  HAPPO, MAPPO on simple_spread (continuous), HARL's tuned MPE settings (20 envs x 200 steps,
      [128, 128], 5 epochs, 1 minibatch): meharl vs HARL's own PyTorch code (../shared/anchors/harl_bench.sh)
  QMIX, VDN on simple_spread (discrete), JaxMARL's ql_rnn_mpe settings: meharl vs JaxMARL's
      baselines (QLearning/qmix_rnn.py, vdn_rnn.py), both recurrent; its time includes tests of 8 envs.
  MAPPO on simple_spread (discrete), JaxMARL's MAPPO settings (16 envs x 128 steps, 4 epochs,
      4 minibatches, 128 units, lr 2e-3): meharl vs JaxMARL's baseline (jaxmarl_bench.sh). JaxMARL's
      actor and critic are recurrent (FC 128 + GRU 128): once against meharl's [128, 128] MLPs, once
      against meharl's recurrent MAPPO (Dense 128 -> GRU 128, whole 128-step sequences).

meharl's speed: the compiled iteration (on-policy: rollout + update; off-policy, after the
warmup: one block of train_interval vector steps + its updates) called once to compile, then
timed over ``--iters`` calls: env steps/s and updates/s of training alone; ``compile_s`` apart. The anchors report
their own wall time of training (HARL: its run() including a 20-episode evaluation; JaxMARL:
the compiled call, compile apart). Rounds alternate meharl and the anchor; medians are reported.

  python bench/speed.py --rounds 2 --out bench/measured/cpu-2026-12-06/onpolicy_speed.json
  python bench/speed.py --rounds 2 --only hatd3_spread_harl,had3qn_spread_discrete_harl --out ...
  python bench/speed.py --rounds 2 --only qmix_spread_discrete_jaxmarl,vdn_spread_discrete_jaxmarl --out ...
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import jax

from meharl.config import resolve
from meharl.experiment import Experiment
from meharl.runners.offpolicy import over_seeds

ANCHORS = Path(__file__).resolve().parents[2] / "shared" / "anchors"

PAIRS = [
    # (name, meharl overrides, anchor command)
    ("hatd3_spread_harl", {"algo": "hatd3", "env": "mpe/simple_spread"},
     ["harl_bench.sh", "hatd3", "simple_spread_v2-continuous", "30000"]),
    ("had3qn_spread_discrete_harl", {"algo": "had3qn", "env": "mpe/simple_spread_discrete"},
     ["harl_bench.sh", "had3qn", "simple_spread_v2-discrete", "30000"]),
    ("happo_spread_harl", {"algo": "happo", "env": "mpe/simple_spread"},
     ["harl_bench.sh", "happo", "simple_spread_v2-continuous", "48000"]),
    ("mappo_spread_harl", {"algo": "mappo", "env": "mpe/simple_spread"},
     ["harl_bench.sh", "mappo", "simple_spread_v2-continuous", "48000"]),
    ("mappo_spread_discrete_jaxmarl",
     {"algo": "mappo", "env": "mpe/simple_spread_discrete", "n_envs": 16, "episode_length": 128, "ppo_epoch": 4,
      "critic_epoch": 4, "actor_num_mini_batch": 4, "critic_num_mini_batch": 4, "actor_lr": 2e-3, "critic_lr": 2e-3},
     ["jaxmarl_bench.sh", "mappo", "MPE_simple_spread_v3", "49152"]),
    # the same with recurrent networks on both sides: Dense 128 -> GRU 128 -> head, trained on whole
    # 128-step sequences in 4 minibatches of 4 envs, as JaxMARL's MAPPO
    ("mappo_rnn_spread_discrete_jaxmarl",
     {"algo": "mappo", "env": "mpe/simple_spread_discrete", "n_envs": 16, "episode_length": 128, "ppo_epoch": 4,
      "critic_epoch": 4, "actor_num_mini_batch": 4, "critic_num_mini_batch": 4, "actor_lr": 2e-3, "critic_lr": 2e-3,
      "use_recurrent_policy": "true", "data_chunk_length": 128},
     ["jaxmarl_bench.sh", "mappo", "MPE_simple_spread_v3", "49152"]),
    # JaxMARL's ql_rnn_mpe settings (8 envs x 26-step sequences, GRU 64, batch 32, one update per
    # block; its agents see obs + id, no last action); JaxMARL tests 8 envs (not 512) every 5% of
    # updates and learns from the start, so its time is training's; 50 blocks per timed call here
    *[(f"{algo}_spread_discrete_jaxmarl",
       {"algo": algo, "env": "mpe/simple_spread_discrete", "sequence_length": 26, "obs_last_action": "false"},
       ["jaxmarl_bench.sh", algo, "MPE_simple_spread_v3", "208000", "TEST_NUM_ENVS=8", "LEARNING_STARTS=0"], 50)
      for algo in ("qmix", "vdn")],
]


def ours(overrides: dict, iters: int, blocks: int = 1) -> dict:
    exp = Experiment(resolve({**overrides, "seeds": "0"}), "/tmp/meharl_speed", quiet=True)
    rs = exp.loop.init(exp.seed_keys())
    rs = exp.loop.warmup(rs)
    t0 = time.perf_counter()
    rs, _ = exp.loop.chunk(rs, blocks)
    jax.block_until_ready(rs)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(iters):
        rs, _ = exp.loop.chunk(rs, blocks)
    jax.block_until_ready(rs)
    wall = time.perf_counter() - t0
    steps = iters * blocks * exp.schedule.block_env_steps
    updates = iters * blocks * exp.schedule.updates_per_block  # on-policy: one (multi-epoch) update per iteration
    out = {"env_steps": steps, "wall_s": wall, "env_steps_per_s": steps / wall, "updates_per_s": updates / wall,
           "compile_s": compile_s}
    if exp.runner.algo.learner == "off_policy":
        # the learner alone: the block's updates (replay sampling included) without the env steps;
        # overhead = the share of the training wall time that is not updates
        updates_only = jax.jit(over_seeds(exp.runner.updates, 1), donate_argnums=0)
        rs, _ = updates_only(rs)
        jax.block_until_ready(rs)
        t0 = time.perf_counter()
        for _ in range(iters):
            rs, _ = updates_only(rs)
        jax.block_until_ready(rs)
        learner = updates / (time.perf_counter() - t0)
        out.update(learner_updates_per_s=learner, overhead_fraction=1 - (updates / learner) / wall)
    return out


def anchor(cmd: list[str]) -> dict:
    out = subprocess.run([str(ANCHORS / cmd[0]), *cmd[1:]], capture_output=True, text=True,
                         env={**os.environ, "EVALS": "1"})
    if out.returncode != 0:
        raise RuntimeError(f"{cmd}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(allow_abbrev=False)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--iters", type=int, default=12, help="timed iterations of meharl's loop per round")
    p.add_argument("--only", default=None, help="comma-separated pair names")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    results = {}
    for name, overrides, cmd, *blocks in PAIRS:
        if a.only and name not in a.only.split(","):
            continue
        rounds = [(ours(overrides, a.iters, *blocks), anchor(cmd)) for _ in range(a.rounds)]
        m = statistics.median(r[0]["env_steps_per_s"] for r in rounds)
        ref = statistics.median(r[1]["env_steps_per_s"] for r in rounds)
        results[name] = {
            "meharl": {"overrides": overrides, "env_steps_per_s_median": m,
                       "compile_s_median": statistics.median(r[0]["compile_s"] for r in rounds),
                       "rounds": [r[0] for r in rounds]},
            "anchor": {"command": cmd, "env_steps_per_s_median": ref,
                       "rounds": [{k: v for k, v in r[1].items() if k not in ("eval_curve", "return_curve", "config")}
                                  for r in rounds]},
            "ratio": m / ref,
        }
        print(json.dumps({name: {"meharl": round(m), "anchor": round(ref), "ratio": round(m / ref, 2),
                                 **{k: round(statistics.median(r[0][k] for r in rounds), 3) for k in
                                    ("updates_per_s", "learner_updates_per_s", "overhead_fraction") if k in rounds[0][0]}}}),
              flush=True)
    results["note"] = ("JaxMARL's MAPPO is recurrent (GRU 128): mappo_spread_discrete_jaxmarl sets it against meharl's "
                       "MLP MAPPO, mappo_rnn_spread_discrete_jaxmarl against meharl's recurrent one. "
                       f"jax {jax.__version__}, {os.cpu_count()} CPUs.")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
