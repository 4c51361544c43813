"""Scripted policies (meharl/scripted.py) on meharl's environments: yardsticks for learned
numbers, and a check that our scales are the papers'.

  mpe/simple_spread  uniformly random actions (the issue: about -72) and the landmark-assignment
                     controller over a grid of gains (the issue: about -18); episode return
  smax/<map>         allies attacking the first enemy in range or focus-firing, else advancing
                     together, against the heuristic enemy HASAC trains against; win rate

Writes JSON ({env: {policy: {"return": mean episode return, "win_rate": ...}}}; the win rate only
on environments that have battles to win) to stdout and --out:
  python bench/scripted.py --env mpe/simple_spread,smax/3m,smax/2s3z,smax/8m --episodes 1000 \\
      --out bench/out/scripted.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from meharl import scripted
from meharl.envs import headline_metric, make

SPREAD_GAINS = [(kp, kd) for kp in (1.0, 2.0, 4.0, 8.0) for kd in (0.0, 0.5, 1.0)]


def policies(env_name: str, env) -> dict:
    if env_name == "mpe/simple_spread":
        return {"random": scripted.uniform_random(env.spec),
                **{f"assignment kp={kp} kd={kd}": scripted.spread_assignment(env.spec.n_agents, kp, kd)
                   for kp, kd in SPREAD_GAINS}}
    if env_name.startswith("smax/"):
        return {p: scripted.smax_attack(env, p) for p in scripted.SMAX_POLICIES}
    raise ValueError(f"no scripted policies for {env_name!r}. Valid choices: mpe/simple_spread, smax/<map>")


def main():
    p = argparse.ArgumentParser(allow_abbrev=False)
    p.add_argument("--env", default="mpe/simple_spread,smax/3m,smax/2s3z", help="comma-separated environments")
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    result = {"episodes": a.episodes, "seed": a.seed, "results": {}}
    for env_name in a.env.split(","):
        env = make(env_name, action_map="box") if env_name.startswith("mpe/") else make(env_name)
        out = result["results"][env_name] = {}
        for name, act in policies(env_name, env).items():
            returns, won = scripted.rollout(env, act, a.episodes, a.seed)
            out[name] = {"return": float(returns.mean())}
            if headline_metric(env_name) == "eval_win_rate":
                out[name]["win_rate"] = float(won.mean())
    text = json.dumps(result, indent=1)
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
