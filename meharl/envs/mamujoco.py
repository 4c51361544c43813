"""Multi-Agent MuJoCo (gymnasium-robotics ``mamujoco_v1``, optional extra ``mamujoco``),
host-stepped, with the HASAC/HARL papers' conventions:

* team reward = the shared reward (every agent receives the robot's reward);
* observations (``mamujoco_obs``): ``local``, MaMuJoCo's partial observability, where each
  agent observes its own joints and the joints ``obsk`` hops away (``mamujoco_obsk``,
  gymnasium-robotics' default 1); or ``reference``, what the HASAC/HARL papers' code
  actually feeds its agents (:class:`ReferenceObservation`): the whole robot, i.e. the
  single-agent observation, with the agent's one-hot index. The reference's tuned files set
  ``agent_obsk`` 0, but its ``get_obs`` never reads it (HARL issue #20: kept global to stay
  comparable with the HAPPO/HATRPO code);
* global state = ``env.state()`` (the single-agent MuJoCo observation);
* episodes of 1000 steps end as a truncation; a fall (Ant, Walker2d, Hopper, Humanoid) is
  a termination;
* actions: the policy's [-1, 1] is scaled onto each joint's Box (Humanoid's is [-0.4, 0.4]).

Tasks are ``Scenario-AxB`` as in the papers; ManySegmentSwimmer is the new name of the
papers' ManyAgentSwimmer. gymnasium-robotics has no HalfCheetah 3x2, Ant 8x1, Walker2d 6x1,
Humanoid 17x1 or HumanoidStandup 17x1: we build them from its single-agent factorisation
(``_factorization``).
"""
from __future__ import annotations

from functools import partial

import gymnasium as gym
import numpy as np

from meharl.envs.host import JointEnv, require

EPISODE_LENGTH = 1000
OBSERVATIONS = ("local", "reference")


# Partitions the papers use that gymnasium-robotics does not build, as groups of joint names
# (HalfCheetah 3x2 as in the original MaMuJoCo); ``x1`` tasks not built in are one joint per agent.
PARTITIONS = {"HalfCheetah-3x2": [("bfoot", "bshin"), ("bthigh", "ffoot"), ("fshin", "fthigh")]}
BUILT_IN = ("HalfCheetah-2x3", "HalfCheetah-6x1", "Ant-2x4", "Ant-4x2", "Walker2d-2x3", "Hopper-3x1", "Humanoid-9|8",
            "ManySegmentSwimmer-10x2")


def _factorization(task: str) -> dict:
    """gymnasium-robotics' ``agent_factorization`` for a task it has no partition of, built
    from its single-agent factorisation (all joints in one part)."""
    from gymnasium_robotics.envs.multiagent_mujoco.obsk import get_parts_and_edges

    scenario = task.split("-")[0]
    (joints,), edges, global_nodes = get_parts_and_edges(scenario, None)
    by_name = {j.label: j for j in joints}
    groups = PARTITIONS.get(task, [(j.label,) for j in joints])
    return {"partition": [tuple(by_name[n] for n in g) for g in groups], "edges": edges, "globals": global_nodes}


def _standardise(x) -> np.ndarray:
    """The reference's per-vector standardisation, (x - mean(x)) / std(x) over x's own entries."""
    x = np.asarray(x, np.float32)
    return (x - x.mean()) / x.std()


class ReferenceObservation:
    """The observations and state of HARL's ``mujoco_multi.py`` (``get_obs``, ``get_state``):
    agent i observes standardise(concat(single-agent observation, one_hot(i))); the state is
    standardise(single-agent observation). A PettingZoo parallel env wrapping ``env`` (not a
    subclass of PettingZoo's wrapper: the core install has no PettingZoo, and this module must
    import there to name the missing extra)."""

    def __init__(self, env):
        self.env = env
        n = len(env.possible_agents)
        self.one_hot = dict(zip(env.possible_agents, np.eye(n, dtype=np.float32)))
        dim = int(np.prod(env.single_agent_env.observation_space.shape)) + n
        self.space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)

    def __getattr__(self, name):  # agents, possible_agents, action_space, metadata, close, ...
        return getattr(self.env, name)

    def observation_space(self, agent):
        return self.space

    def _observe(self, obs: dict) -> dict:
        robot = np.asarray(self.env.state(), np.float32)
        return {a: _standardise(np.concatenate([robot, self.one_hot[a]])) for a in obs}

    def reset(self, seed=None, options=None):
        obs, infos = self.env.reset(seed=seed, options=options)
        return self._observe(obs), infos

    def step(self, actions):
        obs, rewards, terms, truncs, infos = self.env.step(actions)
        return self._observe(obs), rewards, terms, truncs, infos

    def state(self):
        return _standardise(self.env.state())


def _parallel_env(task: str, obsk: int, obs: str = "local"):
    from gymnasium_robotics import mamujoco_v1

    scenario, conf = task.split("-")
    factorization = None if task in BUILT_IN else _factorization(task)
    env = mamujoco_v1.parallel_env(scenario, conf, agent_obsk=obsk, agent_factorization=factorization,
                                   max_episode_steps=EPISODE_LENGTH)
    return ReferenceObservation(env) if obs == "reference" else env


def mamujoco_env(task: str, obsk: int = 1, obs: str = "local"):
    """A picklable factory of the joint env (Gymnasium's worker processes call it)."""
    if obs not in OBSERVATIONS:
        raise ValueError(f"invalid mamujoco_obs {obs!r}. Valid choices: {', '.join(OBSERVATIONS)}")
    require("gymnasium_robotics", "mamujoco", f"mamujoco/{task}")
    return partial(JointEnv, partial(_parallel_env, task, obsk, obs), f"mamujoco/{task}", team_reward="first",
                   state="env", action_map="box", max_steps=EPISODE_LENGTH)
