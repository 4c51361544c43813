"""The loops of ``offpolicy.py``, ``onpolicy.py`` and ``sequence.py`` with the environments stepped on the host.

Same schedules, storage and updates as the compiled runners; only the env steps differ: one
Gymnasium vector env (``envs/host.py``) holds ``n_envs`` envs for each seed, and every vector
step is a jitted act over all seeds and one host step of all envs. Off-policy, each step's
transition goes into the replay by a jitted insert (donated, in place) and a block's updates
are one jitted scan; on-policy, the steps of a rollout are stacked and one jitted update
learns from them; value-based, each block's sequences are stacked and inserted by one jitted
call, its updates another. All are vmapped over seeds. :class:`HostDriver` holds what they share.

Evaluation uses a second vector env of the same size: env j of a seed plays its share of the
``eval_episodes`` episodes with the deterministic policy, one after another.

Checkpoints hold the learner, replay and key exactly; the host envs cannot be saved, so a
resumed run restarts the episodes that were in progress (reset with seeds derived from the
run's seeds and its progress).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from meharl.algorithms.value import Sequence
from meharl.envs.core import TimeStep
from meharl.envs.host import vector_env
from meharl.rollout import Rollout
from meharl.runners.offpolicy import OffPolicyRunner, RunnerState, SeedLoop, jit_once, over_seeds, transition
from meharl.runners.onpolicy import OnPolicyRunner
from meharl.runners.sequence import SequenceRunner, sequence_step


class HostDriver:
    """The host half of a runner: the vector envs, resets, steps and evaluation. Mixed into a
    learner's runner class (``HostDriver, OffPolicyRunner``), whose ``__init__`` it wraps."""

    def __init__(self, make_env, algo, cfg):
        probe = make_env()
        super().__init__(None, algo, cfg, spec=probe.env_spec)
        probe.close()
        self.make_env = make_env
        self.n_seeds = len(cfg.seeds)
        self._vec = {}

    # ------------------------------------------------------------------ host envs
    def vec(self, which: str):
        """The training or evaluation vector env, started on first use."""
        if which not in self._vec:
            self._vec[which] = vector_env(self.make_env, self.n_seeds * self.cfg.n_envs, self.cfg.vector_env,
                                           self.cfg.env_workers)
        return self._vec[which]

    def close(self):
        for v in self._vec.values():
            v.close()
        self._vec = {}

    def _timestep(self, obs: dict, reward=None, terminated=None, truncated=None) -> TimeStep:
        """Vector-env arrays [n_seeds * n_envs, ...] -> a TimeStep [n_seeds, n_envs, ...] (numpy)."""
        total = self.n_seeds * self.cfg.n_envs
        zeros = np.zeros(total, bool)
        ts = TimeStep(
            obs=obs["obs"], state=obs["state"],
            reward=np.zeros(total, np.float32) if reward is None else np.asarray(reward, np.float32),
            terminated=zeros if terminated is None else np.asarray(terminated, bool),
            truncated=zeros if truncated is None else np.asarray(truncated, bool),
            action_mask=obs["action_mask"].astype(bool), alive=obs["alive"].astype(bool), won=obs["won"][:, 0].astype(bool),
        )
        return jax.tree.map(lambda x: x.reshape(self.n_seeds, self.cfg.n_envs, *x.shape[1:]), ts)

    def _reset(self, which: str, seed_keys) -> TimeStep:
        """Reset every env of a vector env; env j of seed s is seeded from s's key."""
        seeds = np.asarray(jax.vmap(lambda k: jax.random.randint(k, (self.cfg.n_envs,), 0, 2**31 - 1))(seed_keys))
        obs, _ = self.vec(which).reset(seed=[int(x) for x in seeds.reshape(-1)])
        return self._timestep(obs)

    def _host_step(self, which: str, env_actions):
        """One step of all envs. Returns (final, next): the time step each action led to and the
        one to act on next (a fresh episode's first where an episode ended)."""
        a = np.asarray(env_actions)
        obs, reward, terminated, truncated, info = self.vec(which).step(a.reshape(-1, *a.shape[2:]))
        final_obs = obs
        if "_final_obs" in info:  # same-step auto-reset: the ended episodes' last observations
            final_obs = {k: v.copy() for k, v in obs.items()}
            for i in np.flatnonzero(info["_final_obs"]):
                for k in final_obs:
                    final_obs[k][i] = info["final_obs"][i][k]
        return self._timestep(final_obs, reward, terminated, truncated), self._timestep(obs)

    def _example_timestep(self) -> TimeStep:
        spec, shape = self.spec, (self.n_seeds, self.cfg.n_envs)
        f32, b = jnp.float32, bool
        return TimeStep(
            obs=jnp.zeros((*shape, spec.n_agents, spec.max_obs_dim), f32), state=jnp.zeros((*shape, spec.state_dim), f32),
            reward=jnp.zeros(shape, f32), terminated=jnp.zeros(shape, b), truncated=jnp.zeros(shape, b),
            action_mask=jnp.zeros((*shape, spec.n_agents, spec.max_action_dim), b),
            alive=jnp.zeros((*shape, spec.n_agents), b), won=jnp.zeros(shape, b),
        )

    # ------------------------------------------------------------------ the loop (all seeds)
    def _resumed(self, rs: RunnerState, blocks_done: int) -> RunnerState:
        keys = jax.vmap(lambda k: jax.random.fold_in(k, blocks_done))(rs.key)
        return rs._replace(timestep=self._reset("train", keys))

    def _compile_driver(self, n_seeds: int):
        def act_deterministic(algo_state, ts, key, carry):
            actions, carry = self.algo.evaluation_act(algo_state, ts.obs, ts.action_mask, key, carry)
            return self.algo.env_actions(actions), carry

        self._act_deterministic = jax.jit(over_seeds(act_deterministic, n_seeds))

    def _evaluate(self, algo_state, keys):
        """``eval_episodes`` complete episodes per seed with the algorithm's evaluation policy
        (``evaluation_act``); env j of a seed plays episodes j, j + n_envs, ... Returns per-episode (team return, won)."""
        E, n_ep = self.cfg.n_envs, self.cfg.eval_episodes
        quota = np.array([len(range(j, n_ep, E)) for j in range(E)])[None].repeat(self.n_seeds, 0)  # [S, E]
        returns = np.zeros((self.n_seeds, n_ep), np.float32)
        won = np.zeros((self.n_seeds, n_ep), bool)
        done_eps = np.zeros_like(quota)
        running = np.zeros((self.n_seeds, E), np.float32)
        ts = self._reset("eval", keys)
        carry = self.algo.evaluation_carry((self.n_seeds, E))
        while np.any(done_eps < quota):
            keys, k_act = jax.vmap(jax.random.split, out_axes=1)(keys)
            env_actions, carry = self._act_deterministic(algo_state, ts, k_act, carry)
            final, ts = self._host_step("eval", env_actions)
            running += final.reward
            ended = final.terminated | final.truncated
            for s, j in zip(*np.nonzero(ended & (done_eps < quota))):
                episode = j + E * done_eps[s, j]
                returns[s, episode], won[s, episode] = running[s, j], final.won[s, j]
                done_eps[s, j] += 1
            running[ended] = 0.0
            # a recurrent policy starts the envs' new episodes from a fresh state
            fresh = self.algo.evaluation_carry((self.n_seeds, E))
            carry = jax.tree.map(lambda c, f: np.where(ended.reshape(ended.shape + (1,) * (c.ndim - 2)), f, c),
                                 carry, fresh)
        return returns, won


class HostOffPolicyRunner(HostDriver, OffPolicyRunner):
    # ------------------------------------------------------------------ jitted pieces
    def compile(self, n_seeds: int) -> SeedLoop:
        assert n_seeds == self.n_seeds

        def act(algo_state, ts, key, random: bool):
            key, k_act = jax.random.split(key)
            actions = self.act(algo_state, ts, k_act, random)
            return actions, self.algo.env_actions(actions), key

        def insert(buffer, ts, actions, final):
            return self.replay.add(buffer, transition(ts, actions, final))

        def init_learner(key, ts):
            k_algo, k_env, k_run = jax.random.split(key, 3)
            return (*self.init_learner(k_algo, ts), k_env, k_run)

        self._act = {random: jax.jit(over_seeds(partial(act, random=random), n_seeds)) for random in (False, True)}
        self._insert = jax.jit(over_seeds(insert, n_seeds), donate_argnums=0)
        self._compile_driver(n_seeds)
        self._init_learner = jit_once(over_seeds(init_learner, n_seeds))
        self._updates = jax.jit(over_seeds(self.updates, n_seeds), donate_argnums=0)

        def template(keys):
            ts = jax.eval_shape(lambda: self._example_timestep())
            algo, buffer, _, key = jax.eval_shape(self._init_learner, keys, ts)
            return RunnerState(algo, buffer, (), ts, key)

        return SeedLoop(init=self._init, warmup=self._warmup, chunk=self._chunk, evaluate=self._evaluate,
                        template=template, resumed=self._resumed)

    def _init(self, keys) -> RunnerState:
        algo, buffer, k_env, key = self._init_learner(keys, self._example_timestep())
        return RunnerState(algo, buffer, (), self._reset("train", k_env), key)

    def _env_steps(self, rs: RunnerState, n: int, random: bool) -> RunnerState:
        ts, key, buffer = rs.timestep, rs.key, rs.buffer
        for _ in range(n):
            actions, env_actions, key = self._act[random](rs.algo, ts, key)
            final, next_ts = self._host_step("train", env_actions)
            buffer = self._insert(buffer, ts, actions, final)
            ts = next_ts
        return rs._replace(buffer=buffer, timestep=ts, key=key)

    def _warmup(self, rs: RunnerState) -> RunnerState:
        return self._env_steps(rs, self.schedule.warmup_vector_steps, True)

    def _chunk(self, rs: RunnerState, n_blocks: int):
        metrics = []
        for _ in range(n_blocks):
            rs = self._env_steps(rs, self.cfg.train_interval, False)
            rs, m = self._updates(rs)
            metrics.append(m)
        return rs, jax.tree.map(lambda *m: jnp.mean(jnp.stack(m), 0), *metrics)



class HostOnPolicyRunner(HostDriver, OnPolicyRunner):
    def __init__(self, make_env, algo, cfg):
        if cfg.use_recurrent_policy:
            raise ValueError(f"use_recurrent_policy=true runs on the JAX environments for now, not on the host-stepped "
                             f"{cfg.env}; JAX families: matrix, mpe, smax")
        super().__init__(make_env, algo, cfg)

    def compile(self, n_seeds: int) -> SeedLoop:
        assert n_seeds == self.n_seeds

        def act(algo_state, ts, key):
            key, k_act = jax.random.split(key)
            actions, logp, _ = self.algo.sample(algo_state.actor_params, ts.obs, ts.action_mask, k_act)
            return actions, logp, self.algo.env_actions(actions), key

        def learn(algo_state, key, steps: dict, final_state):
            # the critic is fixed during a rollout: its values of s_t and of the states the
            # actions led to are computed here, in one batch
            rollout = Rollout(**steps, value=self.algo.value(algo_state, steps["state"])[0],
                              next_value=self.algo.value(algo_state, final_state)[0])
            key, k_update = jax.random.split(key)
            algo_state, metrics = self.algo.update(algo_state, rollout, k_update)
            return algo_state, key, metrics

        def init_algo(key):
            k_algo, k_env, k_run = jax.random.split(key, 3)
            return self.algo.init(k_algo), k_env, k_run

        self._act = jax.jit(over_seeds(act, n_seeds))
        self._learn = jax.jit(over_seeds(learn, n_seeds), donate_argnums=0)
        self._init_algo = jit_once(over_seeds(init_algo, n_seeds))
        self._compile_driver(n_seeds)

        def template(keys):
            algo, _, key = jax.eval_shape(self._init_algo, keys)
            return RunnerState(algo, (), (), jax.eval_shape(self._example_timestep), key)

        return SeedLoop(init=self._init, warmup=lambda rs: rs, chunk=self._chunk, evaluate=self._evaluate,
                        template=template, resumed=self._resumed)

    def _init(self, keys) -> RunnerState:
        algo, k_env, key = self._init_algo(keys)
        return RunnerState(algo, (), (), self._reset("train", k_env), key)

    def _rollout(self, rs: RunnerState):
        """episode_length host steps: the stacked steps [S, T, E, ...], the final states, and
        the time step and key to go on from."""
        f32 = np.float32
        ts, key, steps, finals = rs.timestep, rs.key, [], []
        for _ in range(self.cfg.episode_length):
            actions, logp, env_actions, key = self._act(rs.algo, ts, key)
            final, next_ts = self._host_step("train", env_actions)
            steps.append(dict(obs=ts.obs, state=ts.state, action=actions, action_mask=np.asarray(ts.action_mask, f32),
                              alive=np.asarray(ts.alive, f32), logp=logp, reward=final.reward,
                              terminated=final.terminated.astype(f32), truncated=final.truncated.astype(f32)))
            finals.append(final.state)
            ts = next_ts
        return jax.tree.map(lambda *x: jnp.stack(x, 1), *steps), jnp.stack(finals, 1), ts, key

    def _chunk(self, rs: RunnerState, n_blocks: int):
        metrics = []
        for _ in range(n_blocks):
            steps, finals, ts, key = self._rollout(rs)
            algo, key, m = self._learn(rs.algo, key, steps, finals)
            rs = rs._replace(algo=algo, timestep=ts, key=key)
            metrics.append(m)
        return rs, jax.tree.map(lambda *m: jnp.mean(jnp.stack(m), 0), *metrics)


class HostSequenceRunner(HostDriver, SequenceRunner):
    """The value-based blocks (``runners/sequence.py``) with host-stepped envs: every block
    resets the envs, runs ``sequence_length`` host steps with a jitted act (recurrent carry and
    episode starts as in the compiled loop), inserts the stacked sequences with one jitted call
    and runs the block's updates in another."""

    def compile(self, n_seeds: int) -> SeedLoop:
        assert n_seeds == self.n_seeds

        def act(algo_state, ts, key, carry, start, env_steps):
            key, k_act = jax.random.split(key)
            actions, carry = self.algo.act_step(algo_state, ts, k_act, carry, start, env_steps)
            return self.algo.env_actions(actions), carry, key

        def store(rs: RunnerState, seq: Sequence):
            return rs._replace(buffer=self.replay.add(rs.buffer, seq), carry=rs.carry + self.cfg.n_envs * self.length)

        def init(key):
            k_algo, k_run = jax.random.split(key)
            return RunnerState(self.algo.init(k_algo), self.replay.init(self.example()), (), (), k_run,
                               jnp.zeros((), jnp.int32))

        self._act = jax.jit(over_seeds(act, n_seeds))
        self._store = jax.jit(over_seeds(store, n_seeds), donate_argnums=0)
        self._learn = jax.jit(over_seeds(self.updates, n_seeds), donate_argnums=0)
        init = jit_once(over_seeds(init, n_seeds))
        self._compile_driver(n_seeds)
        return SeedLoop(init=init, warmup=self._warmup, chunk=self._chunk, evaluate=self._evaluate,
                        template=lambda keys: jax.eval_shape(init, keys), resumed=lambda rs, blocks_done: rs)

    def _host_collect(self, rs: RunnerState) -> RunnerState:
        f32, E = np.float32, self.cfg.n_envs
        keys = jax.vmap(jax.random.split)(rs.key)
        key, k_reset = keys[:, 0], keys[:, 1]
        ts = self._reset("train", k_reset)
        carry, start, steps = self.algo.carry((self.n_seeds, E)), np.ones((self.n_seeds, E), f32), []
        for t in range(self.length):
            env_actions, carry, key = self._act(rs.algo, ts, key, carry, start, rs.carry + t * E)
            final, next_ts = self._host_step("train", env_actions)
            steps.append(sequence_step(ts, env_actions, start, final))
            start, ts = steps[-1].done, next_ts
        seq = jax.tree.map(lambda *x: np.stack(x, 2), *steps)  # [S, E, T, ...]
        return self._store(rs._replace(key=key), seq)

    def _warmup(self, rs: RunnerState) -> RunnerState:
        for _ in range(self.warm_blocks):
            rs = self._host_collect(rs)
        return rs

    def _chunk(self, rs: RunnerState, n_blocks: int):
        metrics = []
        for _ in range(n_blocks):
            rs, m = self._learn(self._host_collect(rs))
            metrics.append(m)
        return rs, jax.tree.map(lambda *m: jnp.mean(jnp.stack(m), 0), *metrics)
