"""Multi-Agent MuJoCo (gymnasium-robotics ``mamujoco_v1``, optional extra ``mamujoco``),
host-stepped, with the HASAC/HARL papers' conventions:

* team reward = the shared reward (every agent receives the robot's reward);
* global state = ``env.state()`` (the single-agent MuJoCo observation);
* each agent observes its own joints and the joints ``obsk`` hops away (``mamujoco_obsk``;
  gymnasium-robotics' default is 1, the HARL reference's tuned HASAC configs use 0, which
  the HASAC presets follow);
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

from meharl.envs.host import JointEnv, require

EPISODE_LENGTH = 1000


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


def _parallel_env(task: str, obsk: int):
    from gymnasium_robotics import mamujoco_v1

    scenario, conf = task.split("-")
    factorization = None if task in BUILT_IN else _factorization(task)
    return mamujoco_v1.parallel_env(scenario, conf, agent_obsk=obsk, agent_factorization=factorization,
                                    max_episode_steps=EPISODE_LENGTH)


def mamujoco_env(task: str, obsk: int = 1):
    """A picklable factory of the joint env (Gymnasium's worker processes call it)."""
    require("gymnasium_robotics", "mamujoco", f"mamujoco/{task}")
    return partial(JointEnv, partial(_parallel_env, task, obsk), f"mamujoco/{task}", team_reward="first",
                   state="env", action_map="box", max_steps=EPISODE_LENGTH)
