"""Win rates of scripted ally policies on meharl's SMAX maps, against the same heuristic enemy
HASAC trains against: a yardstick for the learned win rates, since SMAC numbers do not
calibrate SMAX.

Policies (every ally, every step):
  first   attack the first enemy in range (lowest index), else advance
  focus   attack the enemy in range with the least health (focus fire), else advance
"advance": move along the cardinal direction closest to the alive enemy nearest to the allies'
centroid, so the allies stay together; stop when that move is unavailable.

Writes JSON ({map: {policy: win rate}}, episodes, seed) to stdout and --out:
  python bench/smax_scripted.py --maps 3m,2s3z --episodes 512 --out bench/out/smax_scripted.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp

from meharl.envs.smax import SMAX

N_MOVES = 4  # SMAX discrete actions: 0-3 move north, east, south, west; 4 stop; 5 + j attack enemy j
DIRECTIONS = jnp.array([[0.0, 1.0], [1.0, 0.0], [0.0, -1.0], [-1.0, 0.0]])
POLICIES = ("first", "focus")


def scripted_actions(env: SMAX, env_state, ts, policy: str):
    s = env_state.state
    n = env.n_allies
    pos, alive = s.unit_positions, s.unit_alive
    centroid = jnp.sum(pos[:n] * alive[:n, None], 0) / jnp.maximum(alive[:n].sum(), 1)
    gap = jnp.where(alive[n:], jnp.linalg.norm(pos[n:] - centroid, axis=1), jnp.inf)
    goal = pos[n:][jnp.argmin(gap)]

    def act(i):
        in_range = ts.action_mask[i, N_MOVES + 1:]
        priority = -s.unit_health[n:] if policy == "focus" else -jnp.arange(in_range.shape[0], dtype=jnp.float32)
        target = jnp.argmax(jnp.where(in_range, priority, -jnp.inf))
        move = jnp.argmax(DIRECTIONS @ (goal - pos[i]))
        advance = jnp.where(ts.action_mask[i, move], move, N_MOVES)
        return jnp.where(in_range.any(), N_MOVES + 1 + target, advance)

    return jax.vmap(act)(jnp.arange(n))


def win_rate(env: SMAX, policy: str, episodes: int, seed: int) -> float:
    def episode(key):
        key, reset_key = jax.random.split(key)
        env_state, ts = env.reset(reset_key)

        def step(carry, _):
            key, env_state, ts, done, won = carry
            key, step_key = jax.random.split(key)
            env_state, ts = env.step(step_key, env_state, scripted_actions(env, env_state, ts, policy))
            won = won | (~done & ts.won)
            return (key, env_state, ts, done | ts.terminated | ts.truncated, won), None

        carry, _ = jax.lax.scan(step, (key, env_state, ts, False, False), None, env.spec.max_steps)
        return carry[-1]

    keys = jax.random.split(jax.random.PRNGKey(seed), episodes)
    return float(jax.jit(jax.vmap(episode))(keys).mean())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--maps", default="3m,2s3z", help="comma-separated SMAX maps")
    p.add_argument("--episodes", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    result = {"episodes": a.episodes, "seed": a.seed,
              "win_rate": {m: {pol: win_rate(SMAX(m), pol, a.episodes, a.seed) for pol in POLICIES}
                           for m in a.maps.split(",")}}
    text = json.dumps(result, indent=1)
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
