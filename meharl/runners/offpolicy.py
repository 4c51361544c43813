"""The off-policy training loop over JAX environments, compiled end to end.

Schedule (the reference HARL off-policy runner): ``warmup_steps`` env steps of uniformly
random actions fill the buffer; then each *block* is ``train_interval`` vector steps of all
``n_envs`` envs with the stochastic policy, followed by ``update_per_train * train_interval``
gradient updates. A *chunk* is a ``lax.scan`` over blocks; the experiment runs chunks
between evaluations. Everything here is for one seed; the experiment ``vmap``s it over seeds.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from meharl.buffer import NStepReplay, Transition
from meharl.config import Config
from meharl.envs.core import TimeStep, step_autoreset


class RunnerState(NamedTuple):
    algo: NamedTuple
    buffer: NamedTuple
    env_state: NamedTuple
    timestep: TimeStep
    key: jax.Array


class Schedule(NamedTuple):
    """Counts derived from the config (all static)."""

    warmup_vector_steps: int
    block_env_steps: int
    updates_per_block: int
    blocks: int
    blocks_per_eval: int

    @staticmethod
    def of(cfg: Config) -> "Schedule":
        warm = math.ceil(cfg.warmup_steps / cfg.n_envs)
        block_env_steps = cfg.n_envs * cfg.train_interval
        remaining = max(cfg.total_steps - warm * cfg.n_envs, 0)
        return Schedule(
            warmup_vector_steps=warm,
            block_env_steps=block_env_steps,
            updates_per_block=int(cfg.update_per_train * cfg.train_interval),
            blocks=math.ceil(remaining / block_env_steps),
            blocks_per_eval=max(1, round(cfg.eval_interval / block_env_steps)),
        )

    def env_steps(self, blocks_done: int, n_envs: int) -> int:
        return self.warmup_vector_steps * n_envs + blocks_done * self.block_env_steps


class OffPolicyRunner:
    def __init__(self, env, algo, cfg: Config):
        self.env, self.algo, self.cfg = env, algo, cfg
        self.schedule = Schedule.of(cfg)
        if self.schedule.warmup_vector_steps < cfg.n_step:
            raise ValueError(
                f"invalid warmup_steps={cfg.warmup_steps}: the first update needs n_step={cfg.n_step} steps of each of "
                f"the {cfg.n_envs} envs, i.e. warmup_steps >= {cfg.n_step * cfg.n_envs}"
            )
        self.replay = NStepReplay(cfg.n_envs, cfg.buffer_size, cfg.n_step, cfg.batch_size, cfg.gamma)

    # ------------------------------------------------------------------ pieces
    def init(self, key) -> RunnerState:
        k_algo, k_env, k_run = jax.random.split(key, 3)
        algo_state = self.algo.init(k_algo)
        env_state, ts = jax.vmap(self.env.reset)(jax.random.split(k_env, self.cfg.n_envs))
        one = jax.tree.map(lambda x: x[0], ts)
        example = Transition(
            obs=one.obs, state=one.state, action=jnp.zeros(one.action_mask.shape), action_mask=one.action_mask,
            alive=one.alive, reward=one.reward, terminated=one.terminated.astype(jnp.float32),
            done=one.done, next_obs=one.obs, next_state=one.state, next_action_mask=one.action_mask, next_alive=one.alive,
        )
        return RunnerState(algo_state, self.replay.init(example), env_state, ts, k_run)

    def _env_step(self, rs: RunnerState, random: bool) -> RunnerState:
        key, k_act, k_env = jax.random.split(rs.key, 3)
        ts = rs.timestep
        if random:
            actions = jax.vmap(self.algo.random_actions)(ts.action_mask, jax.random.split(k_act, self.cfg.n_envs))
        else:
            actions = self.algo.act(rs.algo, ts.obs, ts.action_mask, k_act)
        env_actions = self.algo.env_actions(actions)
        env_state, final, next_ts = jax.vmap(step_autoreset, in_axes=(None, 0, 0, 0))(
            self.env, jax.random.split(k_env, self.cfg.n_envs), rs.env_state, env_actions
        )
        tr = Transition(
            obs=ts.obs, state=ts.state, action=actions, action_mask=ts.action_mask, alive=ts.alive,
            reward=final.reward, terminated=final.terminated.astype(jnp.float32), done=final.done,
            next_obs=final.obs, next_state=final.state, next_action_mask=final.action_mask, next_alive=final.alive,
        )
        return rs._replace(buffer=self.replay.add(rs.buffer, tr), env_state=env_state, timestep=next_ts, key=key)

    def warmup(self, rs: RunnerState) -> RunnerState:
        return jax.lax.scan(lambda r, _: (self._env_step(r, True), None), rs, None, self.schedule.warmup_vector_steps)[0]

    def _update(self, rs: RunnerState, _):
        key, k_sample, k_update = jax.random.split(rs.key, 3)
        batch = self.replay.sample(rs.buffer, k_sample)
        algo_state, metrics = self.algo.update(rs.algo, batch, k_update)
        return rs._replace(algo=algo_state, key=key), metrics

    def block(self, rs: RunnerState, _):
        rs = jax.lax.scan(lambda r, _: (self._env_step(r, False), None), rs, None, self.cfg.train_interval)[0]
        rs, metrics = jax.lax.scan(self._update, rs, None, self.schedule.updates_per_block)
        return rs, jax.tree.map(lambda m: m.mean(0), metrics)

    def chunk(self, rs: RunnerState, n_blocks: int):
        """n_blocks blocks; returns the metrics averaged over the chunk's updates."""
        rs, metrics = jax.lax.scan(self.block, rs, None, n_blocks)
        return rs, jax.tree.map(lambda m: m.mean(0), metrics)

    def evaluate(self, algo_state, key):
        """Deterministic policy, ``eval_episodes`` fresh episodes in parallel.
        Returns per-episode (team return, won)."""
        n_ep = self.cfg.eval_episodes
        k_reset, k_run = jax.random.split(key)
        env_state, ts = jax.vmap(self.env.reset)(jax.random.split(k_reset, n_ep))

        def step(carry, k):
            env_state, ts, ret, won, running = carry
            k_act, k_env = jax.random.split(k)
            actions = self.algo.env_actions(self.algo.act(algo_state, ts.obs, ts.action_mask, k_act, deterministic=True))
            env_state, nts = jax.vmap(self.env.step)(jax.random.split(k_env, n_ep), env_state, actions)
            ret = ret + running * nts.reward
            won = jnp.where(running & nts.done, nts.won, won)
            return (env_state, nts, ret, won, running & ~nts.done), None

        init = (env_state, ts, jnp.zeros(n_ep), jnp.zeros(n_ep, bool), jnp.ones(n_ep, bool))
        (_, _, ret, won, _), _ = jax.lax.scan(step, init, jax.random.split(k_run, self.env.spec.max_steps))
        return ret, won
