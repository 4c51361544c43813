"""The value-based training loop (QMIX, VDN, Soft-QMIX, FOP, ADER) over JAX environments,
compiled end to end, seeds vmapped like the other loops.

One *block* (pymarl's parallel runner, JaxMARL's ``_update_step``): the ``n_envs`` envs are
reset and run ``sequence_length`` steps with the training policy (an episode that ends is
restarted at once); each env's steps are one :class:`~meharl.algorithms.value.Sequence` in a
replay of sequences (flashbax's item buffer); then ``updates_per_block`` updates, each on
``batch_size`` sequences sampled uniformly. The first blocks only collect (``warmup``), until
the replay holds ``batch_size`` sequences and ``learning_starts`` env steps are done. The
runner state's ``carry`` is the env-step count (the exploration schedules' clock).
``runners/host.py`` runs the same blocks with the envs stepped on the host.
"""
from __future__ import annotations

import math

import flashbax as fbx
import jax
import jax.numpy as jnp

from meharl.algorithms.value import Sequence
from meharl.envs.core import step_autoreset
from meharl.runners.offpolicy import CompiledLoop, RunnerState, Schedule


def sequence_length(cfg, spec) -> int:
    return cfg.sequence_length or spec.max_steps


def sequence_schedule(cfg, spec) -> Schedule:
    block_env_steps = cfg.n_envs * sequence_length(cfg, spec)
    warm_blocks = max(math.ceil(cfg.batch_size / cfg.n_envs), math.ceil(cfg.learning_starts / block_env_steps))
    remaining = max(cfg.total_steps - warm_blocks * block_env_steps, 0)
    return Schedule(warmup_vector_steps=warm_blocks * sequence_length(cfg, spec), block_env_steps=block_env_steps,
                    updates_per_block=cfg.updates_per_block, blocks=math.ceil(remaining / block_env_steps),
                    blocks_per_eval=max(1, round(cfg.eval_interval / block_env_steps)))


def sequence_step(ts, env_actions, start, final) -> Sequence:
    """What a sequence stores of one step: acting on ``ts`` (an episode's first where
    ``start``) with ``env_actions`` led to ``final``."""
    f32 = jnp.float32
    return Sequence(obs=ts.obs, state=ts.state, action=env_actions.astype(jnp.int32), avail=ts.action_mask,
                    alive=ts.alive, start=start, reward=final.reward, terminated=final.terminated.astype(f32),
                    done=final.done.astype(f32), next_obs=final.obs, next_state=final.state,
                    next_avail=final.action_mask)


class SequenceRunner(CompiledLoop):
    def __init__(self, env, algo, cfg, spec=None):
        self.env, self.algo, self.cfg = env, algo, cfg
        self.spec = env.spec if spec is None else spec
        self.length = sequence_length(cfg, self.spec)
        self.schedule = sequence_schedule(cfg, self.spec)
        self.warm_blocks = self.schedule.warmup_vector_steps // self.length
        # the replay holds no more than the run fills (as runners/offpolicy.py)
        capacity = min(cfg.buffer_size, (self.warm_blocks + self.schedule.blocks) * cfg.n_envs)
        self.replay = fbx.make_item_buffer(max_length=max(capacity, cfg.batch_size), min_length=1,
                                           sample_batch_size=cfg.batch_size, add_sequences=True)

    @property
    def total_updates(self) -> int:
        return self.schedule.blocks * self.schedule.updates_per_block

    def example(self) -> Sequence:
        """One sequence of zeros, shaped for the replay."""
        spec, T, f32 = self.spec, self.length, jnp.float32
        n, obs, mask = spec.n_agents, jnp.zeros((T, spec.n_agents, spec.max_obs_dim), f32), \
            jnp.zeros((T, spec.n_agents, spec.max_action_dim), bool)
        return Sequence(obs=obs, state=jnp.zeros((T, spec.state_dim), f32), action=jnp.zeros((T, n), jnp.int32),
                        avail=mask, alive=jnp.zeros((T, n), bool), start=jnp.zeros(T, f32), reward=jnp.zeros(T, f32),
                        terminated=jnp.zeros(T, f32), done=jnp.zeros(T, f32), next_obs=obs,
                        next_state=jnp.zeros((T, spec.state_dim), f32), next_avail=mask)

    def init(self, key) -> RunnerState:
        """No env state is carried: every block resets the envs (``collect``)."""
        k_algo, _, k_run = jax.random.split(key, 3)  # the three-way split of the other loops
        return RunnerState(self.algo.init(k_algo), self.replay.init(self.example()), (), (), k_run,
                           jnp.zeros((), jnp.int32))

    def collect(self, algo_state, key, env_steps) -> Sequence:
        """Each env's ``sequence_length`` steps from a reset: [n_envs, T, ...]."""
        algo, n_envs = self.algo, self.cfg.n_envs
        k_reset, k_run = jax.random.split(key)
        env_state, ts = jax.vmap(self.env.reset)(jax.random.split(k_reset, n_envs))

        def step(c, k):
            env_state, ts, carry, start, t = c
            k_act, k_env = jax.random.split(k)
            actions, carry = algo.act_step(algo_state, ts, k_act, carry, start, env_steps + t)
            env_actions = algo.env_actions(actions)
            env_state, final, next_ts = jax.vmap(step_autoreset, in_axes=(None, 0, 0, 0))(
                self.env, jax.random.split(k_env, n_envs), env_state, env_actions)
            step = sequence_step(ts, env_actions, start, final)
            return (env_state, next_ts, carry, step.done, t + n_envs), step

        init = (env_state, ts, algo.carry((n_envs,)), jnp.ones(n_envs), jnp.zeros((), jnp.int32))
        _, seq = jax.lax.scan(step, init, jax.random.split(k_run, self.length))
        return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), seq)

    def _collect(self, rs: RunnerState) -> RunnerState:
        key, k_collect = jax.random.split(rs.key)
        seq = self.collect(rs.algo, k_collect, rs.carry)
        return rs._replace(buffer=self.replay.add(rs.buffer, seq), key=key,
                           carry=rs.carry + self.cfg.n_envs * self.length)

    def warmup(self, rs: RunnerState) -> RunnerState:
        return jax.lax.scan(lambda r, _: (self._collect(r), None), rs, None, self.warm_blocks)[0]

    def _update(self, rs: RunnerState, _):
        key, k_sample, k_update = jax.random.split(rs.key, 3)
        seq = self.replay.sample(rs.buffer, k_sample).experience
        algo_state, metrics = self.algo.update(rs.algo, seq, k_update, rs.carry)
        return rs._replace(algo=algo_state, key=key), metrics

    def block(self, rs: RunnerState, _):
        return self.updates(self._collect(rs))
