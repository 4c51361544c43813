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

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


# How a policy's [-1, 1] action reaches a continuous Box(low, high) (MPE's and PettingZoo's
# adapters): "reference" passes it through and clips into the box, as PettingZoo's
# ClipOutOfBoundsWrapper did to the HARL reference code's tanh outputs; "box" maps [-1, 1]
# affinely onto [low, high] (the usual act_limit scaling of SAC-style actors).
ACTION_MAPS = ("reference", "box")


def map_action(u, low, high, action_map: str, xp=jnp):
    """A policy action u in [-1, 1] -> the env's Box(low, high); ``xp`` is jnp or np."""
    u = xp.clip(u, -1.0, 1.0)
    if action_map == "reference":
        return xp.clip(u, low, high)
    return low + (u + 1.0) * 0.5 * (high - low)


@dataclass(frozen=True)
class AgentSpec:
    """One agent's spaces. ``action_dim`` is the number of choices when ``discrete``, else the
    dimension of a Box whose bounds are ``low``/``high`` (policies act in [-1, 1] and the
    environment adapter rescales)."""

    obs_dim: int
    action_dim: int
    discrete: bool
    low: float = -1.0
    high: float = 1.0


@dataclass(frozen=True)
class EnvSpec:
    name: str
    agents: tuple[AgentSpec, ...]
    state_dim: int
    max_steps: int  # longest possible episode, used to bound evaluation loops

    @property
    def n_agents(self) -> int:
        return len(self.agents)

    @property
    def max_obs_dim(self) -> int:
        return max(a.obs_dim for a in self.agents)

    @property
    def max_action_dim(self) -> int:
        return max(a.action_dim for a in self.agents)

    @property
    def discrete(self) -> bool:
        return self.agents[0].discrete

    @property
    def obs_mask(self) -> np.ndarray:
        """[n_agents, max_obs_dim] float mask of the real observation entries."""
        return np.array([[float(j < a.obs_dim) for j in range(self.max_obs_dim)] for a in self.agents], np.float32)

    @property
    def action_dim_mask(self) -> np.ndarray:
        """[n_agents, max_action_dim] float mask of the real action entries (dims or choices)."""
        return np.array([[float(j < a.action_dim) for j in range(self.max_action_dim)] for a in self.agents], np.float32)

    @property
    def homogeneous(self) -> bool:
        return len(set(self.agents)) == 1

    def __post_init__(self):
        if len({a.discrete for a in self.agents}) != 1:
            raise ValueError(f"{self.name}: mixing discrete and continuous agents is not supported")


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
