"""PettingZoo's MPE (the ``mpe2`` package), host-stepped: the environment of the HASAC/HARL
papers' MPE experiments, for comparisons with PettingZoo-based work. Same conventions as the
JAX MPE (``mpe.py``): team reward = sum of the agents' rewards, global state = the agents'
observations concatenated, 25 steps ending in truncation, and the same ``action_map``; a test
checks that both give the same returns for the same policy."""
from __future__ import annotations

import importlib
from functools import partial

from meharl.envs.host import JointEnv, require

EPISODE_LENGTH = 25
MODULES = {"simple_spread": "simple_spread_v3", "simple_reference": "simple_reference_v3",
           "simple_speaker_listener": "simple_speaker_listener_v4"}


def _parallel_env(task: str, continuous: bool):
    module = importlib.import_module(f"mpe2.{MODULES[task]}")
    return module.parallel_env(continuous_actions=continuous, max_cycles=EPISODE_LENGTH)


def mpe2_env(task: str, continuous: bool = True, action_map: str = "reference"):
    """A picklable factory of the joint env (Gymnasium's worker processes call it)."""
    name = f"pz_mpe/{task}" + ("" if continuous else "_discrete")
    require("mpe2", "mpe2", name)
    return partial(JointEnv, partial(_parallel_env, task, continuous), name, team_reward="sum", state="concat_obs",
                   action_map=action_map, max_steps=EPISODE_LENGTH)
