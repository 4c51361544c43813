"""The real StarCraft Multi-Agent Challenge (the ``smac`` package of oxwhirl, or ``smacv2``),
host-stepped, for users who have StarCraft II installed. Without the game use SMAX
(``smax/<map>``), our JAX SMAC-like suite.

Conventions as SMAX's adapter and the HARL reference: team reward = SMAC's shared reward,
global state = ``get_state()``, available-action masks, alive = health > 0, ``won`` =
``battle_won``, and a time-limit end (``info["episode_limit"]``) is a truncation.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from functools import partial

import gymnasium as gym
import numpy as np

from meharl.envs.host import joint_spaces
from meharl.envs.spec import AgentSpec, EnvSpec

def check_starcraft(package: str = "smac") -> None:
    """Raise a clear error when the SMAC package or the StarCraft II game is missing."""
    try:  # PyPI's "smac" is another project (SMAC3, hyper-parameter optimisation) without smac.env
        found = importlib.util.find_spec(f"{package}.env") is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        raise ModuleNotFoundError(
            f"smac/* needs oxwhirl's {package!r} package (not installed) and the StarCraft II game. "
            f"Install StarCraft II (set SC2PATH) and `pip install git+https://github.com/oxwhirl/{package}`, "
            "or use SMAX, the JAX SMAC-like suite: env=smax/<map>")
    sc2 = os.environ.get("SC2PATH", os.path.expanduser("~/StarCraftII"))
    if not os.path.isdir(sc2):
        raise FileNotFoundError(f"smac/* needs the StarCraft II game: no installation at {sc2!r} (set SC2PATH). "
                                "Without the game use SMAX: env=smax/<map>")


class StarCraftJointEnv(gym.Env):
    """SMAC's ``StarCraft2Env`` as a joint-space Gymnasium env (see ``host.JointEnv``)."""

    def __init__(self, make_sc2_env, name: str):
        self.env = make_sc2_env()
        info = self.env.get_env_info()
        n, n_actions = info["n_agents"], info["n_actions"]
        self.env_spec = EnvSpec(name=name, agents=tuple(AgentSpec(info["obs_shape"], n_actions, True) for _ in range(n)),
                            state_dim=info["state_shape"], max_steps=info["episode_limit"])
        self.observation_space, self.action_space = joint_spaces(self.env_spec)

    def _joint_obs(self, won: bool = False) -> dict:
        n = self.env_spec.n_agents
        return {
            "obs": np.asarray(self.env.get_obs(), np.float32).reshape(n, -1),
            "state": np.asarray(self.env.get_state(), np.float32).ravel(),
            "action_mask": np.asarray(self.env.get_avail_actions(), np.int8).reshape(n, -1),
            "alive": np.array([self.env.get_unit_by_id(i).health > 0 for i in range(n)], np.int8),
            "won": np.array([won], np.int8),
        }

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.env.reset()
        return self._joint_obs(), {}

    def step(self, action):
        reward, ended, info = self.env.step([int(a) for a in action])
        truncated = bool(ended and info.get("episode_limit", False))
        return self._joint_obs(bool(info.get("battle_won", False))), float(reward), bool(ended) and not truncated, truncated, {}

    def close(self):
        self.env.close()


def _sc2_env(map_name: str):
    return importlib.import_module("smac.env").StarCraft2Env(map_name=map_name)


def smac_env(map_name: str):
    """A picklable factory of the joint env; fails at once, naming what is missing."""
    check_starcraft()
    return partial(StarCraftJointEnv, partial(_sc2_env, map_name), f"smac/{map_name}")
