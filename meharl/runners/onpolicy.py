"""The on-policy training loop over JAX environments, compiled end to end.

One *block* is one iteration: a rollout of ``episode_length`` vector steps of ``n_envs``
envs with the current policies (``rollout.py``), then one ``update`` of the algorithm on it
(advantages, the actors on the template, the critic). A chunk is a loop over
blocks; the experiment runs chunks between evaluations, with the seeds vmapped
(``over_seeds``), exactly as the off-policy loop.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from meharl.envs.core import step_autoreset
from meharl.rollout import Rollout
from meharl.runners.offpolicy import CompiledLoop, RunnerState, Schedule


def on_policy_schedule(cfg) -> Schedule:
    block_env_steps = cfg.n_envs * cfg.episode_length
    return Schedule(warmup_vector_steps=0, block_env_steps=block_env_steps, updates_per_block=1,
                    blocks=math.ceil(cfg.total_steps / block_env_steps),
                    blocks_per_eval=max(1, round(cfg.eval_interval / block_env_steps)))


class OnPolicyRunner(CompiledLoop):
    def __init__(self, env, algo, cfg, spec=None):
        self.env, self.algo, self.cfg = env, algo, cfg
        self.spec = env.spec if spec is None else spec
        self.schedule = on_policy_schedule(cfg)

    @property
    def total_updates(self) -> int:
        return self.schedule.blocks

    def init(self, key) -> RunnerState:
        k_algo, k_env, k_run = jax.random.split(key, 3)
        env_state, ts = jax.vmap(self.env.reset)(jax.random.split(k_env, self.cfg.n_envs))
        return RunnerState(self.algo.init(k_algo), (), env_state, ts, k_run, self.algo.carry((self.cfg.n_envs,)))

    def warmup(self, rs: RunnerState) -> RunnerState:
        """On-policy learning has no warmup."""
        return rs

    def _env_step(self, rs: RunnerState, _):
        algo = self.algo
        key, k_act, k_env = jax.random.split(rs.key, 3)
        ts = rs.timestep
        actor_h, critic_h, start = rs.carry if algo.recurrent else (None, None, None)
        actions, logp, new_actor_h = algo.sample(rs.algo.actor_params, ts.obs, ts.action_mask, k_act, h=actor_h, start=start)
        value, new_critic_h = algo.value(rs.algo, ts.state, critic_h, start)
        env_state, final, next_ts = jax.vmap(step_autoreset, in_axes=(None, 0, 0, 0))(
            self.env, jax.random.split(k_env, self.cfg.n_envs), rs.env_state, algo.env_actions(actions))
        f32 = jnp.float32
        # the value of the state the action led to (the final one where the episode ended),
        # the recurrent critic going on from its state after s_t
        next_value, _ = algo.value(rs.algo, final.state, new_critic_h, None if start is None else jnp.zeros_like(start))
        step = Rollout(obs=ts.obs, state=ts.state, action=actions, action_mask=ts.action_mask.astype(f32),
                       alive=ts.alive.astype(f32), logp=logp, value=value, next_value=next_value, reward=final.reward,
                       terminated=final.terminated.astype(f32), truncated=final.truncated.astype(f32),
                       start=start, actor_h=actor_h, critic_h=critic_h)
        carry = (new_actor_h, new_critic_h, final.done.astype(f32)) if algo.recurrent else ()
        return rs._replace(env_state=env_state, timestep=next_ts, key=key, carry=carry), step

    def block(self, rs: RunnerState, _):
        rs, rollout = jax.lax.scan(self._env_step, rs, None, self.cfg.episode_length)
        key, k_update = jax.random.split(rs.key)
        algo_state, metrics = self.algo.update(rs.algo, rollout, k_update)
        return rs._replace(algo=algo_state, key=key), metrics
