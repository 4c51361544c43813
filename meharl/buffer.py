"""Replay: flashbax's trajectory buffer stores one row per rollout env (time along axis 1);
an n-step sampler reads only what the n-step target needs.

For a sampled start t the n-step target of an off-policy critic is

    y = sum_{j<k} gamma^j r_{t+j} + gamma^k (1 - terminated_{t+k-1}) V(s'_{t+k-1})

where k = n, or fewer when an episode ends (terminated or truncated) inside the window: the
sum stops at the end, and a truncated end still bootstraps from the stored final
observation (``next_obs``), a terminated one does not.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flashbax.buffers import trajectory_buffer as fbx_trajectory

class Batch(NamedTuple):
    """n-step transitions: everything per sample, leading axis B."""

    obs: jax.Array  # [B, n, O]
    state: jax.Array  # [B, S]
    action: jax.Array  # [B, n, A] continuous vectors or one-hots, zero-padded
    action_mask: jax.Array  # [B, n, A]
    alive: jax.Array  # [B, n]
    reward: jax.Array  # [B] discounted n-step reward sum
    discount: jax.Array  # [B] gamma^k (1 - terminated at step k)
    next_obs: jax.Array  # [B, n, O]
    next_state: jax.Array  # [B, S]
    next_action_mask: jax.Array  # [B, n, A]
    next_alive: jax.Array  # [B, n]


class Transition(NamedTuple):
    obs: jax.Array
    state: jax.Array
    action: jax.Array
    action_mask: jax.Array
    alive: jax.Array
    reward: jax.Array
    terminated: jax.Array
    done: jax.Array
    next_obs: jax.Array
    next_state: jax.Array
    next_action_mask: jax.Array
    next_alive: jax.Array


def nstep_return(reward, terminated, done, gamma):
    """reward/terminated/done: [..., n] along consecutive steps of one env.
    Returns (discounted reward sum, bootstrap discount gamma^k (1 - terminated), k - 1)."""
    n = reward.shape[-1]
    idx = jnp.arange(n)
    # k - 1 = index of the first episode end in the window, else n - 1
    last = jnp.min(jnp.where(done, idx, n - 1), axis=-1)
    in_window = idx <= last[..., None]
    ret = jnp.sum(jnp.where(in_window, reward * gamma**idx, 0.0), -1)
    term = jnp.take_along_axis(terminated, last[..., None], -1)[..., 0]
    discount = gamma ** (last + 1) * (1.0 - term)
    return ret, discount, last


class NStepReplay:
    def __init__(self, n_envs: int, buffer_size: int, n_step: int, batch_size: int, gamma: float):
        self.n_envs, self.n_step, self.batch_size, self.gamma = n_envs, n_step, batch_size, gamma
        self.length = buffer_size // n_envs

    def init(self, example: Transition):
        return fbx_trajectory.init(example, self.n_envs, self.length)

    def add(self, state, transition: Transition):
        """transition: leading axis n_envs (one vector step)."""
        return fbx_trajectory.add(state, jax.tree.map(lambda x: x[:, None], transition))

    def can_sample(self, state):
        return state.is_full | (state.current_index >= self.n_step)

    def sample(self, state, key) -> Batch:
        # the valid-window logic of flashbax's trajectory sampler (period 1), then a gather
        # of only the fields each sample needs
        max_time = jnp.where(state.is_full, self.length, state.current_index)
        head = jnp.where(state.is_full, state.current_index, 0)
        n_valid = jnp.maximum(max_time - self.n_step + 1, 1)
        k_t, k_b = jax.random.split(key)
        start = jax.random.randint(k_t, (self.batch_size,), 0, n_valid)
        row = jax.random.randint(k_b, (self.batch_size,), 0, self.n_envs)
        t = (head + start[:, None] + jnp.arange(self.n_step)) % self.length  # [B, n]
        exp = state.experience
        ret, discount, last = nstep_return(
            exp.reward[row[:, None], t], exp.terminated[row[:, None], t], exp.done[row[:, None], t], self.gamma
        )
        t0, tk = t[:, 0], jnp.take_along_axis(t, last[:, None], 1)[:, 0]
        return Batch(
            obs=exp.obs[row, t0],
            state=exp.state[row, t0],
            action=exp.action[row, t0],
            action_mask=exp.action_mask[row, t0].astype(jnp.float32),
            alive=exp.alive[row, t0].astype(jnp.float32),
            reward=ret,
            discount=discount,
            next_obs=exp.next_obs[row, tk],
            next_state=exp.next_state[row, tk],
            next_action_mask=exp.next_action_mask[row, tk].astype(jnp.float32),
            next_alive=exp.next_alive[row, tk].astype(jnp.float32),
        )
