"""Scripted policies: yardsticks for learned returns and checks of the environments' scales.

A policy here is ``act(key, env_state, ts) -> actions`` over one environment of meharl's JAX
protocol (``env_state`` and the last ``TimeStep``), and :func:`rollout` plays it for a batch
of episodes. ``bench/scripted.py`` reports them.
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp

from meharl.runners.offpolicy import play_episodes


def uniform_random(spec):
    """Uniform actions in [-1, 1] (continuous agents of one action size)."""
    def act(key, env_state, ts):
        return jax.random.uniform(key, (spec.n_agents, spec.max_action_dim), minval=-1.0, maxval=1.0)

    return act


def best_assignment(dist):
    """The landmark of each agent under the assignment with the least total distance, over all
    permutations; ``dist`` [agent, landmark]."""
    n = dist.shape[0]
    perms = jnp.array(list(itertools.permutations(range(n))))
    return perms[jnp.argmin(dist[jnp.arange(n), perms].sum(1))]


def spread_assignment(n_agents: int, kp: float, kd: float):
    """MPE simple_spread (continuous, ``action_map="box"``): at every step the assignment of
    agents to landmarks with the least total distance (:func:`best_assignment`), each agent
    accelerating toward its landmark with u = clip(kp * (landmark - position) - kd * velocity)."""
    def act(key, env_state, ts):
        s = env_state[0]  # JaxMARL's MPE state (meharl's MPE adds a step counter)
        pos, vel, landmarks = s.p_pos[:n_agents], s.p_vel[:n_agents], s.p_pos[n_agents:]
        dist = jnp.linalg.norm(pos[:, None] - landmarks[None], axis=-1)  # [agent, landmark]
        best = best_assignment(dist)
        u = jnp.clip(kp * (landmarks[best] - pos) - kd * vel, -1.0, 1.0)
        # MPE moves by (a[2] - a[1], a[4] - a[3]), a in Box(0, 1), which "box" maps from [-1, 1]
        a = jnp.stack([jnp.zeros(n_agents), -u[:, 0], u[:, 0], -u[:, 1], u[:, 1]], 1).clip(0.0, 1.0)
        return 2.0 * a - 1.0

    return act


SMAX_DIRECTIONS = jnp.array([[0.0, 1.0], [1.0, 0.0], [0.0, -1.0], [-1.0, 0.0]])  # moves 0-3: N, E, S, W
SMAX_POLICIES = ("first", "focus")


def smax_attack(env, policy: str):
    """SMAX allies (``env``: meharl's ``smax/<map>``): attack an enemy in range (``first``: the
    lowest index; ``focus``: the one with the least health, focus fire), else advance along the
    cardinal direction closest to the alive enemy nearest the allies' centroid, so the team stays
    together (stop if unavailable)."""
    if policy not in SMAX_POLICIES:
        raise ValueError(f"unknown SMAX scripted policy {policy!r}. Valid choices: {', '.join(SMAX_POLICIES)}")
    n_allies = env.n_allies
    # JaxMARL's ally actions: the moves of SMAX_DIRECTIONS, then stop, then attack enemy j
    stop = env.env.num_movement_actions - 1
    assert stop == len(SMAX_DIRECTIONS), f"JaxMARL SMAX has {stop} moves, SMAX_DIRECTIONS {len(SMAX_DIRECTIONS)}"

    def act(key, env_state, ts):
        s = env_state.state
        pos, alive = s.unit_positions, s.unit_alive
        centroid = jnp.sum(pos[:n_allies] * alive[:n_allies, None], 0) / jnp.maximum(alive[:n_allies].sum(), 1)
        gap = jnp.where(alive[n_allies:], jnp.linalg.norm(pos[n_allies:] - centroid, axis=1), jnp.inf)
        goal = pos[n_allies:][jnp.argmin(gap)]

        def one(i):
            in_range = ts.action_mask[i, stop + 1:]
            priority = (-s.unit_health[n_allies:] if policy == "focus"
                        else -jnp.arange(in_range.shape[0], dtype=jnp.float32))
            target = jnp.argmax(jnp.where(in_range, priority, -jnp.inf))
            move = jnp.argmax(SMAX_DIRECTIONS @ (goal - pos[i]))
            advance = jnp.where(ts.action_mask[i, move], move, stop)
            return jnp.where(in_range.any(), stop + 1 + target, advance)

        return jax.vmap(one)(jnp.arange(n_allies))

    return act


def rollout(env, act, episodes: int, seed: int = 0, record=None):
    """(episode returns [episodes], won [episodes]) of ``act`` over ``episodes`` fresh episodes
    (the evaluation loop of the runners, :func:`meharl.runners.offpolicy.play_episodes`, which
    also returns the trace of ``record`` when given)."""
    def batched(key, env_state, ts):
        return jax.vmap(act)(jax.random.split(key, episodes), env_state, ts)

    return jax.jit(lambda key: play_episodes(env, batched, key, episodes, record))(jax.random.PRNGKey(seed))
