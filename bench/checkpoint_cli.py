"""What the checkpoint diagnoses under bench/ share: their command line
(RUN_DIR [--step STEP] [--episodes N] [--seed-index I] [--out JSON]), loading the chosen
seed's trained state (last checkpoint, or the policy kept at STEP), and the JSON they print
and write."""
from __future__ import annotations

import argparse
import json

import jax

from meharl.experiment import load_run, load_trained


def load(doc: str, accepts):
    """Parse the command line, check the run with ``accepts(cfg)`` (None, or why this
    diagnosis cannot read it), and return (args, experiment, the seed's algorithm state,
    {"blocks_done", "env_steps"} of that state)."""
    p = argparse.ArgumentParser(allow_abbrev=False, description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--step", type=int, default=None,
                   help="env step of a policy kept by keep_policies=true (default: the last checkpoint)")
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--seed-index", type=int, default=0, help="which of the run's seeds (position in its seeds list)")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    cfg = load_run(a.run_dir)
    why = accepts(cfg)
    if why:
        raise ValueError(f"{a.run_dir} trains env={cfg.env}: {why}")
    if not 0 <= a.seed_index < len(cfg.seeds):
        raise ValueError(f"invalid --seed-index {a.seed_index}: {a.run_dir} trains seeds {cfg.seeds}, "
                         f"give 0..{len(cfg.seeds) - 1}")
    exp, algo_state, where = load_trained(a.run_dir, cfg, a.step)
    return a, exp, jax.tree.map(lambda x: x[a.seed_index], algo_state), where  # states carry a leading seed axis


def emit(result: dict, out: str | None):
    text = json.dumps(result, indent=1)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text)
