"""Google Research Football (optional, built from source; see the README for the recipe),
host-stepped, with the HASAC paper's conventions (Appendix H.2.4):

* the academy scenarios of the papers, every left-team player but the keeper controlled;
* observations: the ``simple115v2`` vector per player; dense rewards (``scoring,checkpoints``);
* team reward = the first player's reward (GRF gives every controlled player the same);
* global state, as the reference builds it after GRF's Simple115StateWrapper: the parts
  every observation shares (positions and directions of both teams, ball position and
  direction, ball ownership, game mode) once, then each player's one-hot "active" part;
* ``won`` = the episode scored (the score-rate metric); the scenario's time limit is a
  truncation, a goal or a lost ball ends the episode as a termination.
"""
from __future__ import annotations

import importlib
import importlib.util
from functools import partial

import gymnasium as gym
import numpy as np

from meharl.envs.host import joint_spaces
from meharl.envs.spec import AgentSpec, EnvSpec

SCENARIOS = {  # scenario -> controlled players (the papers' settings)
    "academy_3_vs_1_with_keeper": 3,
    "academy_counterattack_easy": 4,
    "academy_counterattack_hard": 4,
    "academy_pass_and_shoot_with_keeper": 2,
    "academy_run_pass_and_shoot_with_keeper": 2,
    "academy_corner": 10,
}
EPISODE_LENGTH = 401  # steps of an academy episode that runs out of time (game_duration 400, measured)


def global_state(raw: list) -> np.ndarray:
    """Simple115-style state from GRF's raw observations (one dict per controlled player)."""
    first = raw[0]
    s = []
    for key in ("left_team", "left_team_direction", "right_team", "right_team_direction"):
        part = np.asarray(first[key], np.float32).ravel()
        s.append(np.concatenate([part, -np.ones(22 - part.size, np.float32)]))  # pad to 11 players
    s.append(np.asarray(first["ball"], np.float32))
    s.append(np.asarray(first["ball_direction"], np.float32))
    s.append(np.eye(3, dtype=np.float32)[first["ball_owned_team"] + 1])  # none, left, right
    s.append(np.eye(7, dtype=np.float32)[first["game_mode"]])
    for obs in raw:
        active = np.zeros(11, np.float32)
        if obs["active"] != -1:
            active[obs["active"]] = 1.0
        s.append(active)
    return np.concatenate(s)


class FootballJointEnv(gym.Env):
    """A GRF scenario as a joint-space Gymnasium env (see ``host.JointEnv``)."""

    def __init__(self, scenario: str):
        football = importlib.import_module("gfootball.env")
        n = SCENARIOS[scenario]
        self.env = football.create_environment(
            env_name=scenario, representation="simple115v2", rewards="scoring,checkpoints",
            number_of_left_players_agent_controls=n, render=False)
        self.n_actions = int(self.env.action_space.nvec[0])
        self.reset(seed=0)
        state_dim = self._state().size
        self.env_spec = EnvSpec(name=f"football/{scenario}", agents=tuple(AgentSpec(115, self.n_actions, True) for _ in range(n)),
                                state_dim=state_dim, max_steps=EPISODE_LENGTH)
        self.observation_space, self.action_space = joint_spaces(self.env_spec)

    def _state(self):
        return global_state(self.env.unwrapped.observation())

    def _joint_obs(self, obs, won=False):
        n = len(obs)
        return {"obs": np.asarray(obs, np.float32).reshape(n, 115), "state": self._state(),
                "action_mask": np.ones((n, self.n_actions), np.int8), "alive": np.ones(n, np.int8),
                "won": np.array([won], np.int8)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.env.seed(seed)
        self.t = 0
        return self._joint_obs(self.env.reset()), {}

    def step(self, action):
        obs, reward, done, info = self.env.step(np.asarray(action).ravel())
        self.t += 1
        scored = info.get("score_reward", 0) > 0
        truncated = bool(done) and self.t >= self.env_spec.max_steps and not scored
        return self._joint_obs(obs, scored), float(np.ravel(reward)[0]), bool(done) and not truncated, truncated, {}

    def close(self):
        self.env.close()


def football_env(scenario: str):
    """A picklable factory of the joint env; fails at once when gfootball is not installed."""
    if importlib.util.find_spec("gfootball") is None:
        raise ModuleNotFoundError(
            f"football/{scenario} needs Google Research Football, which builds from source: apt-get install "
            "libsdl2-dev libsdl2-image-dev libsdl2-ttf-dev libsdl2-gfx-dev libboost-all-dev cmake build-essential "
            "libgl1-mesa-dev; pip install six gym==0.25.2; pip install --no-build-isolation gfootball")
    return partial(FootballJointEnv, scenario)
