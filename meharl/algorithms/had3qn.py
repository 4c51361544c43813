"""HAD3QN (HARL paper, Appendix I, Algorithm 8): a value-based approximation of HADDPG for
discrete actions.

Every agent has a dueling local Q-network Q_i(o_i, a_i) (its greedy action is its policy); a
centralised dueling critic Q(s, .) outputs one value per *joint* action. One update:

    critic   y = R + discount * Q'(s', a*),  a*_i = argmax Q'_i(o'_i, .)   (target networks)
             L(phi) = (Q_phi(s, a) - y)^2 on the buffer's joint action a
    agents   in a fresh random order (the template, ``sequential.py``); agent i_m regresses
             Q_i(o, a^{i_m}) onto y^{i_m} = Q_phi(s, a*^{i_1:m-1}, a^{-i_1:m-1}), then its entry
             becomes the critic's best response a*^{i_m} = argmax_a Q_phi(s, a*^{i_1:m-1}, a, a^{-i_1:m})
    targets  Polyak averages of the critic and the local networks

``local_target`` chooses the a of the agents' step: ``buffer`` (Algorithm 8: the sampled joint
action) or ``greedy`` (the reference: every agent's current greedy action). Acting is
epsilon-greedy per agent and env (the reference draws one coin for all envs at once). The
critic enumerates the joint actions, prod_i |A_i| outputs: more than ``max_joint_actions`` is
refused. Available-action masks restrict every argmax (the reference has none).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from meharl.algorithms.base import Algorithm, OffPolicyConfig, ValueNorm, regression_loss
from meharl.algorithms.sequential import AgentSlots, order, sequential
from meharl.buffer import Batch
from meharl.config import key
from meharl.networks import MASKED_LOGIT, DuelingQ

LOCAL_TARGETS = ("buffer", "greedy")


@dataclass(frozen=True)
class HAD3QNConfig(OffPolicyConfig):
    # HARL algos_cfgs/had3qn.yaml (and Tables 5 and 8 of the paper)
    n_envs: int = key(10, "parallel rollout envs (HARL's n_rollout_threads)", "positive")
    hidden_sizes: tuple[int, ...] = key((128, 128), "hidden layer widths of the dueling networks' ReLU base",
                                        "positive")
    dueling_v_hidden_sizes: tuple[int, ...] = key((128,), "hidden widths of the value head (Hardswish)", "positive")
    dueling_a_hidden_sizes: tuple[int, ...] = key((128,), "hidden widths of the advantage head (Hardswish)", "positive")
    critic_lr: float = key(1e-3, "critic learning rate (Adam)", "positive")
    gamma: float = key(0.95, "discount factor", "prob")
    epsilon: float = key(0.05, "probability of a uniformly random action (per agent and env)", "prob")
    local_target: str = key("buffer", "where the agents regress: at the buffer's joint action (Algorithm 8) or at "
                            "their current greedy actions (the reference)", choices=LOCAL_TARGETS)
    max_joint_actions: int = key(16_384, "refuse tasks whose joint action space is larger (the critic's outputs)",
                                 "positive")


class HAD3QNState(NamedTuple):
    local_params: dict  # leading axis: one parameter set per agent (1 when shared)
    local_opt: optax.OptState
    target_local_params: dict
    critic_params: dict
    critic_opt: optax.OptState
    target_critic_params: dict
    value_norm: ValueNorm
    updates: jax.Array


class HAD3QN(Algorithm):
    Config = HAD3QNConfig
    learner = "off_policy"
    continuous = False
    metrics = ("critic_loss", "actor_loss", "q_mean")
    description = "Heterogeneous-Agent Dueling Double DQN (Zhong et al., JMLR 2024, App. I): value-based HADDPG"

    def __init__(self, spec, cfg, total_updates: int = 1):
        super().__init__(spec, cfg, total_updates)
        self.sizes = np.array([a.action_dim for a in spec.agents])
        n_joint = int(np.prod(self.sizes))
        if n_joint > cfg.max_joint_actions:
            raise ValueError(
                f"algo=had3qn enumerates the joint actions of {spec.name}: {' x '.join(map(str, self.sizes))} = "
                f"{n_joint:,} critic outputs > max_joint_actions={cfg.max_joint_actions:,}; raise max_joint_actions "
                "if it fits in memory, or use an algorithm that does not enumerate them (hasac, happo, mappo)")
        # joint index = sum_i a_i prod_{j<i} |A_j| (agent 0 the least significant, as the reference)
        self.radix = jnp.asarray(np.concatenate([[1], np.cumprod(self.sizes)[:-1]]), jnp.int32)
        self.n_joint = n_joint
        heads = (cfg.hidden_sizes, cfg.dueling_v_hidden_sizes, cfg.dueling_a_hidden_sizes)
        self.local = DuelingQ(*heads, spec.max_action_dim, cfg.feature_norm)
        self.critic = DuelingQ(*heads, n_joint, layer_norm=cfg.critic_layer_norm)
        self.slots = AgentSlots(self.n, cfg.share_param)
        local_steps = total_updates * (self.n if cfg.share_param else 1)
        self.local_tx = optax.adam(self.lr(cfg.actor_lr, local_steps))
        self.critic_tx = optax.adam(self.lr(cfg.critic_lr, total_updates))

    def init(self, key) -> HAD3QNState:
        spec = self.spec
        k_local, k_critic = jax.random.split(key)
        obs = jnp.zeros((spec.max_obs_dim,))
        local = jax.vmap(lambda k: self.local.init(k, obs, self.obs_mask[0], self.dim_mask[0]))(
            jax.random.split(k_local, self.slots.n_slots))
        state = jnp.zeros((spec.state_dim,))
        critic = self.critic.init(k_critic, state, jnp.ones_like(state), jnp.ones(self.n_joint))
        return HAD3QNState(local, jax.vmap(self.local_tx.init)(local), local, critic, self.critic_tx.init(critic), critic,
                           ValueNorm.create(), jnp.zeros((), jnp.int32))

    # ------------------------------------------------------------------ local Q-networks, acting
    def local_q(self, params, i, obs_i):
        """Agent i's Q_i(o_i, .) [..., A] (padded choices are not choices)."""
        return self.local.apply(params, obs_i, self.obs_mask[i], self.dim_mask[i])

    def greedy(self, local_params, obs, action_mask):
        """Every agent's argmax over its available actions: [..., n] indices."""
        q = jnp.stack([self.local_q(self.slots.get(local_params, i), i, obs[..., i, :]) for i in range(self.n)], -2)
        return jnp.argmax(jnp.where(action_mask * self.dim_mask > 0, q, MASKED_LOGIT), -1)

    def act(self, state: HAD3QNState, obs, action_mask, key, deterministic=False):
        """epsilon-greedy one-hots [..., n, A] (greedy when deterministic)."""
        k_coin, k_random = jax.random.split(key)
        greedy = jax.nn.one_hot(self.greedy(state.local_params, obs, action_mask), self.spec.max_action_dim)
        explore = jax.random.uniform(k_coin, greedy.shape[:-1] + (1,)) < jnp.where(deterministic, 0.0, self.cfg.epsilon)
        return jnp.where(explore, self.random_actions(action_mask, k_random), greedy)

    # ------------------------------------------------------------------ the joint critic
    def joint_index(self, idx):
        """Individual action indices [..., n] -> the joint action's index [...]."""
        return jnp.sum(idx * self.radix, -1)

    def critic_values(self, params, value_norm, state):
        """Q(s, .) over the joint actions [..., J], de-normalised."""
        q = self.critic.apply(params, state, jnp.ones_like(state), jnp.ones(self.n_joint))
        return value_norm.values(q, self.cfg.value_norm)

    def update(self, ts: HAD3QNState, batch: Batch, key):
        cfg, slots = self.cfg, self.slots
        taken = jnp.argmax(batch.action, -1)  # [B, n]
        # --- the global target and loss (Algorithm 8): a* from the target local networks
        a_star = self.greedy(ts.target_local_params, batch.next_obs, batch.next_action_mask)
        next_q = jnp.take_along_axis(self.critic_values(ts.target_critic_params, ts.value_norm, batch.next_state),
                                     self.joint_index(a_star)[:, None], -1)[:, 0]
        value_norm, y = ts.value_norm.targets(batch.reward + batch.discount * next_q, cfg.value_norm)
        y = jax.lax.stop_gradient(y)

        def critic_loss(params):
            q = self.critic.apply(params, batch.state, jnp.ones_like(batch.state), jnp.ones(self.n_joint))
            q_taken = jnp.take_along_axis(q, self.joint_index(taken)[:, None], -1)[:, 0]
            return regression_loss(q_taken - y, cfg).mean(), q_taken

        (c_loss, q_pred), g = jax.value_and_grad(critic_loss, has_aux=True)(ts.critic_params)
        upd, critic_opt = self.critic_tx.update(g, ts.critic_opt, ts.critic_params)
        critic_params = optax.apply_updates(ts.critic_params, upd)

        # --- the agents, sequentially: regress onto the updated critic, then best-respond
        q_all = jax.lax.stop_gradient(self.critic_values(critic_params, value_norm, batch.state))  # [B, J]
        base = taken if cfg.local_target == "buffer" else self.greedy(ts.local_params, batch.obs, batch.action_mask)
        perm = order(key, self.n, cfg.fixed_order)
        avail = batch.action_mask * self.dim_mask

        def agent_step(m, i, carry):
            local_params, local_opt, actions, losses = carry
            params, opt = slots.get(local_params, i), slots.get(local_opt, i)
            joint = self.joint_index(actions)
            y_i = jnp.take_along_axis(q_all, joint[:, None], -1)[:, 0]
            w = batch.alive[:, i]

            def loss_fn(p):
                q_i = jnp.take_along_axis(self.local_q(p, i, batch.obs[:, i]), actions[:, i, None], -1)[:, 0]
                return jnp.sum(regression_loss(q_i - y_i, cfg) * w) / jnp.maximum(w.sum(), 1.0)

            loss, g = jax.value_and_grad(loss_fn)(params)
            upd, opt = self.local_tx.update(g, opt, params)
            params = optax.apply_updates(params, upd)
            # agent i's best response under the critic, the others fixed: joint indices with its entry varied
            choices = joint[:, None] + (jnp.arange(self.spec.max_action_dim)[None] - actions[:, i, None]) * self.radix[i]
            q_i = jnp.take_along_axis(q_all, jnp.clip(choices, 0, self.n_joint - 1), -1)
            best = jnp.argmax(jnp.where(avail[:, i] > 0, q_i, MASKED_LOGIT), -1)
            return slots.put(local_params, i, params), slots.put(local_opt, i, opt), actions.at[:, i].set(best), \
                losses.at[i].set(loss)

        local_params, local_opt, _, losses = sequential(self.n, perm, agent_step,
                                                        (ts.local_params, ts.local_opt, base, jnp.zeros(self.n)))
        new = HAD3QNState(local_params, local_opt, optax.incremental_update(local_params, ts.target_local_params, cfg.polyak),
                          critic_params, critic_opt,
                          optax.incremental_update(critic_params, ts.target_critic_params, cfg.polyak),
                          value_norm, ts.updates + 1)
        return new, {"critic_loss": c_loss, "actor_loss": losses.mean(), "q_mean": q_pred.mean()}
