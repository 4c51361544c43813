"""Host-stepped environments: any PettingZoo parallel env as one Gymnasium env over joint
spaces, vectorised by Gymnasium's ``SyncVectorEnv``, in this process or split over worker
processes (:class:`PooledVectorEnv`).

:class:`JointEnv` turns a PettingZoo ``ParallelEnv`` into a ``gymnasium.Env`` whose

* observation is a dict holding exactly the per-step fields of our protocol's ``TimeStep``
  (``obs`` [n, max_obs_dim] zero-padded, ``state``, ``action_mask`` [n, max_action_dim],
  ``alive`` [n], ``won``), so that Gymnasium's same-step auto-reset hands back the whole
  final time step of an episode (``info["final_obs"]``), which a truncation bootstraps from;
* action is the padded joint action: [n, max_action_dim] in [-1, 1] for continuous agents
  (mapped onto each agent's Box by ``action_map``, see ``core.ACTION_MAPS``), or [n] indices;
* reward is the team reward, ``terminated``/``truncated`` are the episode's.

Using your own PettingZoo environment takes a few lines::

    from functools import partial
    from meharl.envs.host import JointEnv
    make_env = partial(JointEnv, partial(my_module.parallel_env, some_option=1), name="mine/task",
                       team_reward="sum", state="env")

``JointEnv(...).env_spec`` is the :class:`EnvSpec` the algorithms are built from (``spec``
is Gymnasium's registry spec), and
``meharl.runners.host.HostOffPolicyRunner(make_env, algo, cfg)`` trains on it (see
``meharl.experiment.build``). The env needs a global ``state()`` when ``state="env"``;
``state="concat_obs"`` concatenates the agents' observations instead. Agents that leave the
episode early count as dead (alive = 0, zero observation) until it ends. A discrete agent's
available actions are read from ``info[agent]["action_mask"]`` when the env provides one.
"""
from __future__ import annotations

import importlib.util
import multiprocessing as mp
import os
import pickle
import time
import traceback

import gymnasium as gym
import numpy as np

from meharl.envs.spec import ACTION_MAPS, AgentSpec, EnvSpec, map_action

TEAM_REWARDS = ("sum", "mean", "first")


def require(module: str, extra: str, env: str) -> None:
    """Fail at once, before anything is built, when an optional extra is not installed."""
    if importlib.util.find_spec(module) is None:
        raise ModuleNotFoundError(f"{env} needs the optional extra {extra!r} ({module} is not installed): "
                                  f"pip install 'meharl[{extra}]'")
STATES = ("env", "concat_obs")


def joint_spaces(spec: EnvSpec):
    """The joint observation space (the per-step fields of a ``TimeStep``, padded) and the
    joint action space ([n] choices, or [n, max_action_dim] in [-1, 1]) of ``spec``."""
    n, O, A = spec.n_agents, spec.max_obs_dim, spec.max_action_dim
    observation_space = gym.spaces.Dict({
        "obs": gym.spaces.Box(-np.inf, np.inf, (n, O), np.float32),
        "state": gym.spaces.Box(-np.inf, np.inf, (spec.state_dim,), np.float32),
        "action_mask": gym.spaces.MultiBinary((n, A)),
        "alive": gym.spaces.MultiBinary(n),
        "won": gym.spaces.MultiBinary(1),
    })
    if spec.discrete:
        return observation_space, gym.spaces.MultiDiscrete([A] * n)
    return observation_space, gym.spaces.Box(-1.0, 1.0, (n, A), np.float32)


class JointEnv(gym.Env):
    def __init__(self, make_parallel_env, name: str, team_reward: str = "sum", state: str = "env",
                 action_map: str = "box", max_steps: int | None = None):
        for key, value, choices in (("team_reward", team_reward, TEAM_REWARDS), ("state", state, STATES),
                                    ("action_map", action_map, ACTION_MAPS)):
            if value not in choices:
                raise ValueError(f"invalid {key} {value!r}. Valid choices: {', '.join(choices)}")
        self.env = make_parallel_env()
        self.team_reward, self.state_kind, self.action_map = team_reward, state, action_map
        self.agents = list(self.env.possible_agents)
        specs = []
        for a in self.agents:
            space = self.env.action_space(a)
            obs_dim = int(np.prod(self.env.observation_space(a).shape))
            if isinstance(space, gym.spaces.Discrete):
                specs.append(AgentSpec(obs_dim, int(space.n), True))
            else:
                specs.append(AgentSpec(obs_dim, int(np.prod(space.shape)), False, float(np.min(space.low)),
                                       float(np.max(space.high))))
        self.env.reset(seed=0)
        state_dim = (sum(s.obs_dim for s in specs) if state == "concat_obs"
                     else int(np.prod(np.shape(self.env.state()))))
        self.env_spec = EnvSpec(name=name, agents=tuple(specs), state_dim=state_dim,
                            max_steps=int(max_steps or getattr(self.env.unwrapped, "max_cycles", 0) or 1000))
        self.lows = [np.asarray(self.env.action_space(a).low) if not s.discrete else None for a, s in zip(self.agents, specs)]
        self.highs = [np.asarray(self.env.action_space(a).high) if not s.discrete else None for a, s in zip(self.agents, specs)]
        self.observation_space, self.action_space = joint_spaces(self.env_spec)

    def _joint_obs(self, obs: dict, infos: dict, won: bool = False) -> dict:
        spec = self.env_spec
        padded = np.zeros((spec.n_agents, spec.max_obs_dim), np.float32)
        mask = np.asarray(spec.action_dim_mask, np.int8)
        alive = np.zeros(spec.n_agents, np.int8)
        for i, a in enumerate(self.agents):
            if a in obs:
                o = np.asarray(obs[a], np.float32).ravel()
                padded[i, : o.size] = o
                alive[i] = 1
            avail = infos.get(a, {}).get("action_mask") if spec.discrete else None
            if avail is not None:
                mask[i, : spec.agents[i].action_dim] = np.asarray(avail, np.int8)
        if self.state_kind == "concat_obs":
            state = np.concatenate([padded[i, : s.obs_dim] for i, s in enumerate(spec.agents)])
        else:
            state = np.asarray(self.env.state(), np.float32).ravel()
        return {"obs": padded, "state": state.astype(np.float32), "action_mask": mask, "alive": alive,
                "won": np.array([won], np.int8)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        obs, infos = self.env.reset(seed=seed, options=options)
        return self._joint_obs(obs, infos), {}

    def env_actions(self, action) -> dict:
        out = {}
        for i, (a, s) in enumerate(zip(self.agents, self.env_spec.agents)):
            if s.discrete:
                out[a] = int(action[i])
            else:
                u = np.asarray(action[i, : s.action_dim], np.float32)
                out[a] = map_action(u, self.lows[i], self.highs[i], self.action_map).astype(np.float32)
        return out

    def step(self, action):
        acts = {a: v for a, v in self.env_actions(action).items() if a in self.env.agents}
        obs, rewards, terms, truncs, infos = self.env.step(acts)
        r = [float(rewards[a]) for a in self.agents if a in rewards]
        reward = {"sum": sum(r), "mean": float(np.mean(r)) if r else 0.0, "first": r[0] if r else 0.0}[self.team_reward]
        # the episode is over when PettingZoo has removed every agent; a time limit reached by
        # any agent still running makes it a truncation (bootstrap), else a termination
        ended = not self.env.agents
        truncated = ended and any(bool(truncs[a]) and not bool(terms.get(a)) for a in truncs)
        terminated = ended and not truncated
        won = any(bool(infos.get(a, {}).get("won", False)) for a in self.agents)
        return self._joint_obs(obs, infos, won), reward, terminated, truncated, {}

    def close(self):
        self.env.close()


def vector_env(make_env, n: int, kind: str, workers: int = 0):
    """``n`` copies of ``make_env()`` stepped together, auto-resetting in the same step (the
    final observation is kept in ``info["final_obs"]``, the ended envs in ``info["_final_obs"]``).
    ``kind``: ``sync`` (all in this process) or ``async`` (``workers`` processes, each stepping
    its share of the envs one after another; 0: one per usable CPU core, at most ``n``)."""
    if kind == "async":
        return PooledVectorEnv(make_env, n, workers or usable_cores())
    return gym.vector.SyncVectorEnv([make_env] * n, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class PooledVectorEnv:
    """``n`` envs split over ``workers`` processes, each holding a ``SyncVectorEnv`` of its share:
    one pipe round trip per process and step, where Gymnasium's ``AsyncVectorEnv`` (one process
    per env) pays one per env and, with more envs than cores, a context switch each. Processes
    start with ``spawn`` (forking a process that runs JAX can deadlock) and end with this one
    (a worker whose pipe closes exits). Same ``reset``/``step``/``close`` results as
    ``SyncVectorEnv`` over all ``n`` envs (``info`` holds only the final observations). An env's
    exception is raised here, a worker's death as a ``RuntimeError``; either closes the pool."""

    def __init__(self, make_env, n: int, workers: int):
        ctx = mp.get_context("spawn")
        self.shares = np.array_split(np.arange(n), min(workers, n))
        self._pipes, self._processes = [], []
        try:
            for share in self.shares:
                pipe, child = ctx.Pipe()
                process = ctx.Process(target=_pooled_worker, args=(child, make_env, len(share)), daemon=True)
                process.start()
                child.close()
                self._pipes.append(pipe)
                self._processes.append(process)
        except BaseException:
            self.close()
            raise

    def _call(self, command: str, args) -> list:
        """Send each worker its command, then read every answer (so none is left in a pipe)."""
        answers = {}  # worker index -> ("ok" | "error" | "died", result or exception)
        for i, (pipe, arg) in enumerate(zip(self._pipes, args)):
            try:
                pipe.send((command, arg))
            except OSError as error:
                answers[i] = ("died", error)
        if not answers:
            for i, pipe in enumerate(self._pipes):
                try:
                    answers[i] = pipe.recv()
                except (EOFError, OSError) as error:
                    answers[i] = ("died", error)
        failed = next(((i, a) for i, a in sorted(answers.items()) if a[0] != "ok"), None)
        if failed is None:
            return [answers[i][1] for i in range(len(self._pipes))]
        (i, (status, error)), codes = failed, [p.exitcode for p in self._processes]
        self.close()
        if status == "died":
            raise RuntimeError(f"host env worker {i} died (exit codes of the workers: {codes})") from error
        raise error

    def reset(self, seed):
        answers = self._call("reset", [[seed[i] for i in share] for share in self.shares])
        return _concat_obs(answers), {}

    def step(self, actions):
        answers = self._call("step", [actions[share] for share in self.shares])
        obs, reward, terminated, truncated, final_obs, ended = zip(*answers)
        ended = np.concatenate(ended)
        info = {"final_obs": np.concatenate(final_obs), "_final_obs": ended} if ended.any() else {}
        return _concat_obs(obs), np.concatenate(reward), np.concatenate(terminated), np.concatenate(truncated), info

    def close(self, timeout: float = 30.0):
        for pipe in self._pipes:
            try:
                pipe.send(("close", None))
            except OSError:
                pass
            pipe.close()
        deadline = time.monotonic() + timeout  # one deadline for all: closing an env can take a while
        for process in self._processes:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
        self._pipes, self._processes = [], []


def _concat_obs(parts) -> dict:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _pooled_worker(pipe, make_env, n: int):
    """One process of :class:`PooledVectorEnv`: its ``n`` envs (built on the first command),
    stepped on request until told to close or its pipe closes. Answers ``("ok", result)`` or
    ``("error", exception)``, the exception carrying this process's traceback as a note."""
    vec = None
    try:
        while True:
            try:
                command, arg = pipe.recv()
            except EOFError:
                return
            if command == "close":
                return
            try:
                if vec is None:
                    vec = gym.vector.SyncVectorEnv([make_env] * n, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
                if command == "reset":
                    pipe.send(("ok", vec.reset(seed=arg)[0]))
                else:
                    obs, reward, terminated, truncated, info = vec.step(arg)
                    ended = info.get("_final_obs", np.zeros(n, bool))
                    final_obs = info.get("final_obs", np.full(n, None, object))
                    pipe.send(("ok", (obs, reward, terminated, truncated, final_obs, ended)))
            except Exception as error:  # noqa: BLE001 - answered, raised by the caller
                error.add_note(f"in a host env worker process:\n{traceback.format_exc()}")
                try:  # an exception that does not survive pickling goes as its text
                    pickle.loads(pickle.dumps(error))
                except Exception:  # noqa: BLE001
                    error = RuntimeError(f"{type(error).__name__}: {error}\n{traceback.format_exc()}")
                pipe.send(("error", error))
    finally:
        if vec is not None:
            vec.close()
