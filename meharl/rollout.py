"""On-policy rollout storage and generalised advantage estimation (GAE).

A rollout is ``episode_length`` vector steps of ``n_envs`` envs, time-major. Episodes end
inside it (the runner auto-resets); ``terminated`` and ``truncated`` are kept apart: a real
end does not bootstrap, a time limit bootstraps from the value of the final observation
(``next_value``, computed at collection from the state the last action led to).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

TRUNCATIONS = ("bootstrap", "zero_advantage")


class Rollout(NamedTuple):
    obs: jax.Array  # [T, E, n, O]
    state: jax.Array  # [T, E, S]
    action: jax.Array  # [T, E, n, A] vectors or one-hots, zero-padded
    action_mask: jax.Array  # [T, E, n, A] float
    alive: jax.Array  # [T, E, n] float
    logp: jax.Array  # [T, E, n] log pi_i(a_i | o_i) of the acting policy
    value: jax.Array  # [T, E] the critic's raw output at s_t (normalised under value_norm)
    next_value: jax.Array  # [T, E] the critic's raw output at the state a_t led to
    reward: jax.Array  # [T, E]
    terminated: jax.Array  # [T, E] float
    truncated: jax.Array  # [T, E] float
    # recurrent policies only: 1 where s_t starts an episode, and the hidden states the actors
    # [T, E, n, H] and the critic [T, E, H] had before step t (before the reset at a start)
    start: jax.Array | None = None
    actor_h: jax.Array | None = None
    critic_h: jax.Array | None = None


def gae(reward, value, next_value, terminated, truncated, gamma: float, lam: float, truncation: str = "bootstrap"):
    """Advantages [T, E] by GAE(gamma, lambda) (Schulman et al. 2016) over a rollout whose
    episodes may end anywhere:

        delta_t = r_t + gamma (1 - terminated_t) V(s'_t) - V(s_t)
        A_t     = delta_t + gamma lambda (1 - done_t) A_{t+1},     A_T = 0

    where s'_t is the state a_t led to (the final one where an episode ended), so a time
    limit bootstraps from its final observation. ``truncation="zero_advantage"`` is the HARL
    reference's handling instead: the advantage of a truncated step is zeroed (its return is
    then V(s_t)), and the trace is cut there as at any end."""
    done = jnp.maximum(terminated, truncated)
    delta = reward + gamma * (1.0 - terminated) * next_value - value
    if truncation == "zero_advantage":
        delta = jnp.where(truncated > 0, 0.0, delta)

    def back(a_next, xs):
        d, dn = xs
        a = d + gamma * lam * (1.0 - dn) * a_next
        return a, a

    _, adv = jax.lax.scan(back, jnp.zeros_like(reward[0]), (delta, done), reverse=True)
    return adv
