"""The functional environment protocol (DESIGN.md, "The environment protocol").

Every JAX-native environment exposes

    spec                                   an :class:`EnvSpec`
    reset(key) -> (env_state, TimeStep)
    step(key, env_state, actions) -> (env_state, TimeStep)

and never resets itself: :func:`step_autoreset` does that for the runners, keeping the
final time step of an episode (its observation is needed to bootstrap a truncation).

Heterogeneous agents are stored padded: observations to the largest observation size and
actions to the largest action size, with masks from the spec saying which entries are real.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from meharl.envs.spec import ACTION_MAPS, AgentSpec, EnvSpec, map_action  # noqa: F401 (re-exported)


class TimeStep(NamedTuple):
    obs: jax.Array  # [n_agents, max_obs_dim], zero beyond each agent's obs_dim
    state: jax.Array  # [state_dim], the global state for centralised critics
    reward: jax.Array  # [] team reward
    terminated: jax.Array  # [] bool: a real end, no bootstrap
    truncated: jax.Array  # [] bool: a time limit, bootstrap from this obs/state
    action_mask: jax.Array  # [n_agents, max_action_dim] bool: available discrete actions
    alive: jax.Array  # [n_agents] bool
    won: jax.Array  # [] bool, battle-style tasks; False elsewhere

    @property
    def done(self) -> jax.Array:
        return jnp.logical_or(self.terminated, self.truncated)


def pad_obs(obs_list, max_obs_dim: int) -> jax.Array:
    """Stack per-agent observations, zero-padding each to ``max_obs_dim``."""
    return jnp.stack([jnp.pad(o, (0, max_obs_dim - o.shape[-1])) for o in obs_list])


def default_action_mask(spec: EnvSpec) -> jax.Array:
    return jnp.asarray(spec.action_dim_mask > 0)


def step_autoreset(env, key, env_state, actions):
    """Step; where the episode ended, reset. Returns ``(env_state, final, next_ts)``:
    ``final`` is the time step the action led to (its obs/state are the bootstrap for a
    truncation) and ``next_ts`` is what the agents act on next (the reset one after an end)."""
    k_step, k_reset = jax.random.split(key)
    env_state, final = env.step(k_step, env_state, actions)
    reset_state, reset_ts = env.reset(k_reset)
    done = final.done
    env_state = jax.tree.map(lambda r, s: jnp.where(done, r, s), reset_state, env_state)
    next_ts = jax.tree.map(lambda r, s: jnp.where(done, r, s), reset_ts, final)
    return env_state, final, next_ts
