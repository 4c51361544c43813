"""Agent and environment specs and the continuous action maps: plain Python and NumPy, so that
host-stepped environments' worker processes never import JAX."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


# How a policy's [-1, 1] action reaches a continuous Box(low, high) (MPE's and PettingZoo's
# adapters): "reference" passes it through and clips into the box, as PettingZoo's
# ClipOutOfBoundsWrapper did to the HARL reference code's tanh outputs; "box" maps [-1, 1]
# affinely onto [low, high] (the usual act_limit scaling of SAC-style actors).
ACTION_MAPS = ("reference", "box")


def map_action(u, low, high, action_map: str, xp=np):
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
