"""HADDPG and HATD3 (HARL paper, Sections 3.5.2-3.5.3, Algorithms 6-7, Eq. 14) and their
simultaneous baselines MADDPG (Lowe et al. 2017) and MATD3 (Ackermann et al. 2019).

Deterministic actors mu_i(o_i) in [-1, 1]^d and a centralised critic Q(s, a) on the global
state and the joint action. One update is one critic step and, every ``policy_freq``-th
update, the actors' step followed by the Polyak-averaged targets of critics and actors:

    critic   y = R + discount * min_j Q'_j(s', a'),  a'_i = mu'_i(o'_i)                  (HADDPG)
             a'_i = clip(mu'_i(o'_i) + clip(N(0, policy_noise), +-noise_clip), -1, 1)     (HATD3)
    actors   HA: agents in a fresh random order (the template, ``sequential.py``); agent i_m
             ascends Q_1(s, mu_new^{i_1:m-1}(o), mu^{i_m}(o), mu_old^{i_m+1:n}(o))       (Eq. 14)
             MA: every agent ascends Q_1(s, mu^i(o^i), a^{-i}) with a^{-i} the buffer's actions

HATD3 = HADDPG + twin critics (clipped double Q), target policy smoothing and delayed actor
updates (``policy_freq`` 2; the targets move with the actors, as in TD3 and the reference).

Where this reads the paper or differs from the reference (docs/algorithms/off-policy.md):

- Algorithms 6-7 write the acting policy and the optimisation variable with the hat of the
  target actors; we act with the online actors plus exploration noise and optimise the
  online actors, as Eq. 14, DDPG, TD3 and the reference do.
- Exploration: a_i = clip(mu_i(o_i) + N(0, expl_noise), -1, 1) per dimension (the reference;
  no Ornstein-Uhlenbeck process).
- The actors' objective averages over the samples where the agent is alive (the reference has
  no dead agents on MPE and MAMuJoCo, where both are the same).
- ``mini_epochs`` gradient steps per agent per actor update (the paper's e; the reference: 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from meharl.algorithms.base import Algorithm, OffPolicyConfig, ValueNorm
from meharl.algorithms.critics import JointQ
from meharl.algorithms.sequential import AgentSlots, order, sequential
from meharl.buffer import Batch
from meharl.config import key
from meharl.networks import DeterministicActor


@dataclass(frozen=True)
class HADDPGConfig(OffPolicyConfig):
    # HARL algos_cfgs/haddpg.yaml (and Table 5 of the paper)
    n_envs: int = key(10, "parallel rollout envs (HARL's n_rollout_threads)", "positive")
    critic_lr: float = key(1e-3, "critic learning rate (Adam)", "positive")
    expl_noise: float = key(0.1, "std of the Gaussian exploration noise, per action dimension", "nonneg")
    policy_freq: int = key(1, "update the actors (and all targets) every policy_freq-th update", "positive")
    mini_epochs: int = key(1, "actor gradient steps per agent per actor update", "positive")


@dataclass(frozen=True)
class HATD3Config(HADDPGConfig):
    # HARL algos_cfgs/hatd3.yaml
    policy_noise: float = key(0.2, "std of the target policy smoothing noise", "nonneg")
    noise_clip: float = key(0.5, "the smoothing noise is clipped to +-noise_clip", "nonneg")
    policy_freq: int = key(2, "update the actors (and all targets) every policy_freq-th update", "positive")


class DDPGState(NamedTuple):
    actor_params: dict  # leading axis: one parameter set per agent (1 when shared)
    actor_opt: optax.OptState
    target_actor_params: dict
    critic_params: dict  # leading axis: the critics (2 when twin)
    critic_opt: optax.OptState
    target_critic_params: dict
    value_norm: ValueNorm
    updates: jax.Array
    actor_loss: jax.Array  # [n] of the last actor update (reported between delayed updates)


class HADDPG(Algorithm):
    Config = HADDPGConfig
    learner = "off_policy"
    discrete = False
    masked = False
    metrics = ("critic_loss", "actor_loss", "q_mean")
    description = "Heterogeneous-Agent DDPG (Zhong et al., JMLR 2024): HAML with deterministic actors, off-policy"
    twin = False  # clipped double Q over two critics
    smoothing = False  # target policy smoothing
    simultaneous = False  # MA: every actor against the buffer's actions of the others

    def __init__(self, spec, cfg, total_updates: int = 1):
        super().__init__(spec, cfg, total_updates)
        self.actor = DeterministicActor(cfg.hidden_sizes, spec.max_action_dim, cfg.feature_norm)
        self.slots = AgentSlots(self.n, cfg.share_param)
        actor_updates = total_updates // cfg.policy_freq
        actor_steps = actor_updates * cfg.mini_epochs * (self.n if cfg.share_param else 1)
        self.actor_tx = optax.adam(self.lr(cfg.actor_lr, actor_steps))
        self.critic = JointQ(cfg, 2 if self.twin else 1, optax.adam(self.lr(cfg.critic_lr, total_updates)))

    def init(self, key) -> DDPGState:
        spec = self.spec
        k_actor, k_critic = jax.random.split(key)
        obs = jnp.zeros((spec.max_obs_dim,))
        actor_params = jax.vmap(lambda k: self.actor.init(k, obs, self.obs_mask[0]))(jax.random.split(k_actor, self.slots.n_slots))
        critic_params, critic_opt = self.critic.init(k_critic, spec.state_dim, self.n, spec.max_action_dim)
        return DDPGState(actor_params, jax.vmap(self.actor_tx.init)(actor_params), actor_params, critic_params,
                         critic_opt, critic_params, ValueNorm.create(), jnp.zeros((), jnp.int32), jnp.zeros(self.n))

    # ------------------------------------------------------------------ acting
    def mu(self, params, i, obs_i):
        """Agent i's deterministic action, zero on its padded dimensions."""
        return self.actor.apply(params, obs_i, self.obs_mask[i]) * self.dim_mask[i]

    def mu_all(self, actor_params, obs):
        """Every agent's action: obs [..., n, O] -> [..., n, A]."""
        return jnp.stack([self.mu(self.slots.get(actor_params, i), i, obs[..., i, :]) for i in range(self.n)], -2)

    def act(self, state: DDPGState, obs, action_mask, key, deterministic=False):
        """mu(o), plus clipped Gaussian exploration noise unless deterministic."""
        a = self.mu_all(state.actor_params, obs)
        noise = jnp.where(deterministic, 0.0, self.cfg.expl_noise) * jax.random.normal(key, a.shape)
        return jnp.clip(a + noise, -1.0, 1.0) * self.dim_mask

    def target_actions(self, ts: DDPGState, next_obs, key):
        """a' of the critic's target: the target actors', smoothed for TD3."""
        a = self.mu_all(ts.target_actor_params, next_obs)
        if self.smoothing:
            cfg = self.cfg
            eps = jnp.clip(cfg.policy_noise * jax.random.normal(key, a.shape), -cfg.noise_clip, cfg.noise_clip)
            a = jnp.clip(a + eps, -1.0, 1.0) * self.dim_mask
        return a

    # ------------------------------------------------------------------ update
    def q(self, critic_params, value_norm, state, joint_action):
        """The critics' de-normalised values [n_q, B]."""
        q = self.critic(critic_params, state, joint_action)
        return value_norm.values(q, self.cfg.value_norm)

    def td_target(self, ts: DDPGState, batch: Batch, key):
        """y = R + discount * min_j Q'_j(s', a') (the min is over one critic for DDPG)."""
        next_q = self.q(ts.target_critic_params, ts.value_norm, batch.next_state,
                        self.target_actions(ts, batch.next_obs, key))
        return batch.reward + batch.discount * next_q.min(0)

    def improve_actors(self, actor_params, actor_opt, q_of, batch: Batch, key):
        """Every agent's deterministic policy gradient step(s) on the template. ``q_of(joint
        action) -> [B]`` is the critic at the batch's states. HA: the others play their current
        actions, the agents already updated their new ones (Eq. 14); MA: the buffer's."""
        cfg, slots = self.cfg, self.slots
        perm = order(key, self.n, cfg.fixed_order)
        actions = batch.action if self.simultaneous else jax.lax.stop_gradient(self.mu_all(actor_params, batch.obs))
        source_params, source_opt = actor_params, actor_opt

        def agent_step(m, i, carry):
            actor_params, actor_opt, actions, losses = carry
            # unshared, agent i's slot is untouched until its turn: read it from the input
            params, opt = (slots.get(actor_params, i), slots.get(actor_opt, i)) if cfg.share_param else (
                slots.get(source_params, i), slots.get(source_opt, i))
            obs_i, w = batch.obs[:, i], batch.alive[:, i]

            def loss_fn(p):
                q = q_of(actions.at[:, i].set(self.mu(p, i, obs_i)))
                return -jnp.sum(q * w) / jnp.maximum(w.sum(), 1.0)

            def epoch(_, c):
                params, opt, _ = c
                loss, g = jax.value_and_grad(loss_fn)(params)
                upd, opt = self.actor_tx.update(g, opt, params)
                return optax.apply_updates(params, upd), opt, loss

            params, opt, loss = jax.lax.fori_loop(0, cfg.mini_epochs, epoch, (params, opt, jnp.zeros(())))
            if not self.simultaneous:  # the next agents play against agent i's new action
                actions = actions.at[:, i].set(jax.lax.stop_gradient(self.mu(params, i, obs_i)))
            return slots.put(actor_params, i, params), slots.put(actor_opt, i, opt), actions, losses.at[i].set(loss)

        actor_params, actor_opt, _, losses = sequential(self.n, perm, agent_step,
                                                        (actor_params, actor_opt, actions, jnp.zeros(self.n)))
        return actor_params, actor_opt, losses

    def update(self, ts: DDPGState, batch: Batch, key):
        cfg = self.cfg
        k_target, k_actor = jax.random.split(key)
        value_norm, y = ts.value_norm.targets(self.td_target(ts, batch, k_target), cfg.value_norm)
        critic_params, critic_opt, critic_loss, q_pred = self.critic.fit(ts.critic_params, ts.critic_opt, batch.state,
                                                                         batch.action, y)

        first_critic = jax.tree.map(lambda x: x[:1], critic_params)

        def q_of(joint):
            """The actors ascend the first critic (Algorithm 7), de-normalised."""
            return self.q(first_critic, value_norm, batch.state, joint)[0]

        def actors_and_targets(_):
            actor_params, actor_opt, losses = self.improve_actors(ts.actor_params, ts.actor_opt, q_of, batch, k_actor)
            return (actor_params, actor_opt, optax.incremental_update(actor_params, ts.target_actor_params, cfg.polyak),
                    optax.incremental_update(critic_params, ts.target_critic_params, cfg.polyak), losses)

        def unchanged(_):
            return ts.actor_params, ts.actor_opt, ts.target_actor_params, ts.target_critic_params, ts.actor_loss

        # the reference counts updates from 1: the actors move at updates policy_freq, 2 policy_freq, ...
        actor_turn = (ts.updates + 1) % cfg.policy_freq == 0
        actor_params, actor_opt, target_actor, target_critic, actor_loss = (
            actors_and_targets(None) if cfg.policy_freq == 1 else jax.lax.cond(actor_turn, actors_and_targets, unchanged, None))
        new = DDPGState(actor_params, actor_opt, target_actor, critic_params, critic_opt, target_critic, value_norm,
                        ts.updates + 1, actor_loss)
        return new, {"critic_loss": critic_loss, "actor_loss": actor_loss.mean(), "q_mean": q_pred.mean()}


class HATD3(HADDPG):
    Config = HATD3Config
    description = "Heterogeneous-Agent TD3 (Zhong et al., JMLR 2024): HADDPG with twin critics, smoothing, delay"
    twin = True
    smoothing = True


class MADDPG(HADDPG):
    description = "MADDPG (Lowe et al., 2017): deterministic actors updated simultaneously, centralised critic"
    simultaneous = True


class MATD3(HATD3):
    description = "MATD3 (Ackermann et al., 2019): MADDPG with twin critics, smoothing, delay"
    simultaneous = True
