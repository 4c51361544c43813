"""Heterogeneous-Agent Soft Actor-Critic (HASAC paper, Algorithm 2; Equations 9-10).

Pure functions on a :class:`HASACState`:

    init(key) -> state
    act(state, obs, action_mask, key, deterministic) -> actions      (padded, see networks.py)
    update(state, batch, key) -> (state, metrics)

One update = the twin soft-Q step (Eq. 9), then the sequential actor update of Eq. 10 on the
template (``algorithms/sequential.py``): agents in a random order, each playing against the
actions just re-sampled from the agents already updated and the pre-update actions of the
others; then the temperatures (Appendix H.1) and the Polyak-averaged target critics.

Where this differs from the paper or the reference implementation (docs/algorithms/hasac.md
has the evidence for each choice):

- n-step target. Eq. 9 is one-step. ``n_step`` > 1 uses the reference's n-step target, the
  discounted sum of the n rewards plus the soft value of the n-th next state: the entropy
  terms of the intermediate steps are dropped and there is no off-policy correction for
  the n - 1 actions taken by older policies. ``n_step=1`` is Eq. 9 exactly.
- Temperatures. ``per_agent``: agent i's actor loss uses alpha_i and the critic's entropy
  term is sum_i alpha_i log pi_i; ``shared``: one alpha for all. Both are fitted by the
  gradient of Appendix H.1 averaged over the alive (sample, agent) pairs (the shared one on
  the joint entropy, target sum_i H_i). The reference additionally learns a critic-only
  temperature on the joint entropy; we do not (Eq. 5 has one temperature per policy term).
  Auto-tuned temperatures start at ``alpha``; the reference's all start at 1.
- Value normalisation. With ``value_norm`` the critics regress normalised targets; the
  actors and the soft target use the de-normalised Q (the paper's objective).
  ``value_norm_actor=normalized`` hands the actors the normalised Q, as the reference's
  ``get_values`` does; the temperature then weighs entropy against Q / std.
- Discrete actor gradient. ``gumbel`` (the reference): a straight-through Gumbel-softmax
  sample through the critic, biased (on the HASAC matrix game at (0.6, 0.2, 0.2) with an
  exact critic it points towards C while Eq. 10's gradient points towards A). ``exact``:
  the expectation over the agent's own choices, one critic evaluation per choice.
- Target entropies: continuous -dim(A_i) (SAC); discrete ``ratio * log |A_i|`` (ratio
  ``discrete_target_entropy_ratio``, 0.98 as the reference intends; the reference computes
  log 1 = 0 for discrete spaces, a shape bug, which ratio 0 reproduces).
  ``discrete_target_entropy_over=available`` makes it ``ratio * log |A_i(s)|`` per state
  (masked actions); ``discrete_target_entropy_ratio_final`` anneals the ratio linearly over
  the run (not in the papers).
- Adaptive target entropies (``ader``, ADER, Kim & Sung, ICML 2023, Eqs. B.7-B.8): H_i =
  beta_i H_0 with beta an EMA (weight ``ader_xi`` on the new value) of a softmax over the
  agents of the required-exploration metric. ADER's paper defines the metric as dV_JT/dV_i,
  which needs a factored critic (``algo=ader`` has one); HASAC's critic is joint, so the
  option uses the metric of ADER's ICML version and code, dV/dH_i, by autodiff: V(s) =
  E_{a~pi}[min_j Q_j(s, a)], agent i's entropy raised by widening its Gaussian before the
  squashing (log sigma_i + delta / dim A_i raises that entropy by delta). Continuous agents.
- Averaged actor (``actor_polyak``, not in the papers): a Polyak average of the actors'
  weights that evaluation plays; training samples the online actors.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from meharl.algorithms.ader import ader_weights
from meharl.algorithms.base import Algorithm, OffPolicyConfig, StochasticPolicyConfig, ValueNorm, set_initial_policy
from meharl.algorithms.critics import JointQ
from meharl.algorithms.sequential import AgentSlots, order, sequential
from meharl.buffer import Batch
from meharl.config import key
from meharl.envs.core import EnvSpec
from meharl.networks import Actor, masked_log_softmax, policy_sample, tanh_gaussian_sample

TEMPERATURES = ("per_agent", "shared")
DISCRETE_ACTOR_GRADIENTS = ("gumbel", "exact")
DISCRETE_TARGET_ENTROPY_OVER = ("action_space", "available")
VALUE_NORM_ACTOR = ("denormalized", "normalized")


@dataclass(frozen=True)
class HASACConfig(OffPolicyConfig, StochasticPolicyConfig):
    # HARL's HASAC defaults (algos_cfgs/hasac.yaml)
    hidden_sizes: tuple[int, ...] = key((256, 256), "hidden layer widths of actors and critics", "positive")
    n_step: int = key(20, "n of the n-step soft TD target", "positive")
    alpha: float = key(0.2, "temperature: fixed, or the initial one when auto_alpha", "nonneg")
    auto_alpha: bool = key(True, "fit the temperatures to target entropies (Appendix H.1)")
    alpha_lr: float = key(3e-4, "temperature learning rate (Adam)", "positive")
    temperature: str = key("per_agent", "one temperature per agent, or one shared", choices=TEMPERATURES)
    target_entropy: typing.Optional[float] = key(None, "target entropy of every agent (None: the defaults in hasac.py)")
    discrete_target_entropy_ratio: float = key(0.98, "discrete default target entropy = ratio * log(n)", "nonneg")
    discrete_target_entropy_ratio_final: typing.Optional[float] = key(
        None, "anneal the ratio linearly to this over the run (None: constant)", "nonneg")
    discrete_target_entropy_over: str = key("action_space", "n of the ratio's target: the action space, or the actions "
                                            "available in each state", choices=DISCRETE_TARGET_ENTROPY_OVER)
    value_norm_actor: str = key("denormalized", "with value_norm, the Q the actors maximise: de-normalised (the paper) "
                                "or normalised (the reference)", choices=VALUE_NORM_ACTOR)
    mini_epochs: int = key(1, "actor gradient steps per agent per update", "positive")
    discrete_actor_gradient: str = key("gumbel", "discrete actors: straight-through Gumbel-softmax (the reference) or the "
                                       "exact expectation over the agent's choices", choices=DISCRETE_ACTOR_GRADIENTS)
    actor_polyak: typing.Optional[float] = key(None, "Polyak rate of an averaged actor that evaluation plays (None: "
                                               "no average)", "unit")
    ader: bool = key(False, "ADER's adaptive per-agent target entropies H_i = beta_i H_0 (continuous agents)")
    ader_total_entropy: typing.Optional[float] = key(None, "ADER's H_0 = sum_i H_i (None: the sum of the fixed "
                                                     "targets, N x (-dim A) as in ADER's continuous tasks)")
    ader_xi: float = key(0.9, "ADER's EMA weight of the new beta (Eq. B.8; the authors' code gives it 0.1)", "unit")
    ader_temperature: float = key(1.0, "softmax temperature of Eq. B.7 over the metric divided by its largest "
                                  "magnitude (the authors' code: 0.1)", "positive")

    def validate(self):
        super().validate()
        if self.alpha == 0 and self.auto_alpha:
            raise ValueError("invalid alpha=0 with auto_alpha=true: the log-temperature starts at log(alpha)")


class HASACState(NamedTuple):
    actor_params: dict  # leading axis: one parameter set per agent (1 when shared)
    actor_opt: optax.OptState
    critic_params: dict  # leading axis 2: the twin soft Q-networks
    target_params: dict
    critic_opt: optax.OptState
    log_alpha: jax.Array  # [n_agents] or [1] when shared
    alpha_opt: optax.OptState
    value_norm: ValueNorm
    updates: jax.Array
    avg_actor_params: dict | None = None  # the averaged actor (None without actor_polyak: no leaves)
    ader_beta: jax.Array | None = None  # ADER's beta^EMA [n] (None without ader)


def default_target_entropy(spec: EnvSpec, cfg) -> np.ndarray:
    if cfg.target_entropy is not None:
        return np.full(spec.n_agents, cfg.target_entropy, np.float32)
    return np.array(
        [cfg.discrete_target_entropy_ratio * np.log(a.action_dim) if a.discrete else -float(a.action_dim) for a in spec.agents],
        np.float32,
    )


def _index(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


class HASAC(Algorithm):
    Config = HASACConfig
    learner = "off_policy"
    metrics = ("critic_loss", "actor_loss", "q_mean", "alpha", "entropy")
    per_agent_metrics = ("alpha", "entropy")
    spans_run = ("lr_decay", "discrete_target_entropy_ratio_final")
    description = "Heterogeneous-Agent Soft Actor-Critic (Liu et al., ICLR 2024): MEHAML with soft Q, off-policy"

    def __init__(self, spec: EnvSpec, cfg, total_updates: int = 1):
        super().__init__(spec, cfg, total_updates)
        if not spec.discrete or cfg.target_entropy is not None:
            why = "its agents are continuous" if not spec.discrete else f"target_entropy={cfg.target_entropy} overrides it"
            if cfg.discrete_target_entropy_over == "available":
                raise ValueError(f"discrete_target_entropy_over=available has no effect on {spec.name}: {why}; "
                                 "use discrete_target_entropy_over=action_space")
            if cfg.discrete_target_entropy_ratio_final is not None:
                raise ValueError(f"discrete_target_entropy_ratio_final={cfg.discrete_target_entropy_ratio_final} has no "
                                 f"effect on {spec.name}: {why}; leave it unset (none)")
        if cfg.ader and (spec.discrete or not cfg.auto_alpha or cfg.temperature != "per_agent"):
            raise ValueError(f"ader=true needs continuous agents, auto_alpha=true and temperature=per_agent; got "
                             f"{spec.name} ({'discrete' if spec.discrete else 'continuous'}), auto_alpha={cfg.auto_alpha}, "
                             f"temperature={cfg.temperature} (discrete tasks: algo=ader)")
        if cfg.ader:
            self.metrics = self.metrics + ("target_entropy", "ader_metric")
            self.per_agent_metrics = self.per_agent_metrics + ("target_entropy", "ader_metric")
        self.discrete = spec.discrete
        self.actor = Actor(cfg.hidden_sizes, spec.max_action_dim, spec.discrete, cfg.feature_norm)
        self.slots = AgentSlots(self.n, cfg.share_param)
        self.target_entropy = jnp.asarray(default_target_entropy(spec, cfg))
        self.total_entropy = (float(self.target_entropy.sum()) if cfg.ader_total_entropy is None
                              else cfg.ader_total_entropy)  # ADER's H_0
        self.per_state_target = cfg.discrete_target_entropy_over == "available"  # checked above: it applies
        ratio, final = cfg.discrete_target_entropy_ratio, cfg.discrete_target_entropy_ratio_final
        # the discrete ratio after `updates` updates (checked above: set only where it applies)
        self.target_ratio = (lambda updates: ratio) if final is None else optax.linear_schedule(ratio, final, max(total_updates, 1))
        # an actor optimiser steps mini_epochs times per update, n times more when shared
        actor_steps = total_updates * cfg.mini_epochs * (self.n if cfg.share_param else 1)
        self.actor_tx = optax.adam(self.lr(cfg.actor_lr, actor_steps))
        self.critic = JointQ(cfg, 2, optax.adam(self.lr(cfg.critic_lr, total_updates)))  # the twin soft Qs
        self.alpha_tx = optax.adam(cfg.alpha_lr)

    # ------------------------------------------------------------------ init / act
    def init(self, key) -> HASACState:
        cfg, spec = self.cfg, self.spec
        k_actor, k_critic = jax.random.split(key)
        obs = jnp.zeros((spec.max_obs_dim,))
        actor_params = jax.vmap(lambda k: self.actor.init(k, obs, self.obs_mask[0]))(jax.random.split(k_actor, self.slots.n_slots))
        if cfg.init_policy is not None:
            actor_params = set_initial_policy(actor_params, cfg.init_policy)
        critic_params, critic_opt = self.critic.init(k_critic, spec.state_dim, self.n, spec.max_action_dim)
        n_alpha = 1 if cfg.temperature == "shared" else self.n
        log_alpha = jnp.full((n_alpha,), jnp.log(jnp.maximum(cfg.alpha, 1e-30)), jnp.float32)
        return HASACState(
            actor_params=actor_params,
            actor_opt=jax.vmap(self.actor_tx.init)(actor_params),
            critic_params=critic_params,
            target_params=critic_params,
            critic_opt=critic_opt,
            log_alpha=log_alpha,
            alpha_opt=jax.vmap(self.alpha_tx.init)(log_alpha),
            value_norm=ValueNorm.create(),
            updates=jnp.zeros((), jnp.int32),
            avg_actor_params=None if cfg.actor_polyak is None else actor_params,
            ader_beta=jnp.full((self.n,), 1.0 / self.n) if cfg.ader else None,
        )

    def _agent_out(self, params, i, obs_i):
        return self.actor.apply(params, obs_i, self.obs_mask[i])

    def _sample_agent(self, params, i, obs_i, avail_i, key, deterministic=False):
        out = self._agent_out(params, i, obs_i)
        return policy_sample(out, self.discrete, self.dim_mask[i], avail_i, key, deterministic)

    def sample_all(self, actor_params, obs, avail, key, deterministic=False):
        """All agents at once. obs [..., n, O], avail [..., n, A] -> actions [..., n, A], logp [..., n]."""
        keys = jax.random.split(key, self.n)
        outs = [self._sample_agent(self.slots.get(actor_params, i), i, obs[..., i, :], avail[..., i, :], keys[i], deterministic)
                for i in range(self.n)]
        return jnp.stack([o[0] for o in outs], -2), jnp.stack([o[1] for o in outs], -1)

    def act(self, state: HASACState, obs, action_mask, key, deterministic=False, averaged=False):
        """Actions of all agents; ``averaged``: the averaged actor's where there is one (evaluation)."""
        params = state.avg_actor_params if averaged and state.avg_actor_params is not None else state.actor_params
        return self.sample_all(params, obs, action_mask, key, deterministic)[0]

    def evaluation_act(self, state: HASACState, obs, action_mask, key, carry=()):
        """The deterministic policy evaluation plays: the averaged actor where there is one."""
        return self.act(state, obs, action_mask, key, deterministic=True, averaged=True), carry

    def target_entropies(self, action_mask, updates=0, ader_beta=None):
        """Target entropy of every agent in every sample, [B, n], after `updates` updates, with
        ADER's ``ader_beta`` (see the module docstring)."""
        if ader_beta is not None:
            return jnp.broadcast_to(ader_beta * self.total_entropy, action_mask.shape[:-1])
        if self.per_state_target:
            n_avail = jnp.maximum((action_mask * self.dim_mask).sum(-1), 1.0)
            return self.target_ratio(updates) * jnp.log(n_avail)
        if self.cfg.discrete_target_entropy_ratio_final is not None:  # discrete, action-space target
            return jnp.broadcast_to(self.target_ratio(updates) * jnp.log(self.dim_mask.sum(-1)), action_mask.shape[:-1])
        return jnp.broadcast_to(self.target_entropy, action_mask.shape[:-1])

    # ------------------------------------------------------------------ losses
    def _alpha(self, log_alpha):
        a = jnp.exp(log_alpha)
        return jnp.broadcast_to(a, (self.n,))

    def _q(self, critic_params, state, joint_action, value_norm, for_actor=False):
        """The twin Qs, de-normalised under value_norm (except for the actors with
        value_norm_actor=normalized, the reference's choice)."""
        q = self.critic(critic_params, state, joint_action)
        keep_normalized = for_actor and self.cfg.value_norm_actor == "normalized"
        return value_norm.values(q, self.cfg.value_norm and not keep_normalized)

    def actor_loss(self, params, i, critic_params, value_norm, batch: Batch, actions, key, log_alpha_i):
        """Eq. 10's objective for agent i, alive-weighted: E[alpha_i log pi_i(a_i|o_i) - min_j Q_j(s, a_i, a^{-i})],
        the other agents playing ``actions`` [B, n, A]. Returns (loss, log pi_i [B])."""
        def q_of(joint):
            return self._q(critic_params, batch.state, joint, value_norm, for_actor=True).min(0)

        if self.discrete and self.cfg.discrete_actor_gradient == "exact":
            # E_{a~pi_i}[alpha log pi_i(a) - Q(s, a, a^{-i})] summed over agent i's choices
            logits = self._agent_out(params, i, batch.obs[:, i])
            mask = self.dim_mask[i] * batch.action_mask[:, i]
            logp_all = masked_log_softmax(logits, mask)
            pi = jnp.exp(logp_all) * mask
            onehots = jnp.eye(self.spec.max_action_dim)
            q_all = jax.vmap(lambda e: q_of(actions.at[:, i].set(e)), out_axes=-1)(onehots)  # [B, A]
            logp_i = jnp.sum(pi * jnp.where(mask > 0, logp_all, 0.0), -1)  # E[log pi_i], for alpha and metrics
            objective = jnp.exp(log_alpha_i) * logp_i - jnp.sum(pi * q_all, -1)
        else:
            # reparameterised sample (continuous) or straight-through Gumbel-softmax (discrete)
            a_i, logp_i = self._sample_agent(params, i, batch.obs[:, i], batch.action_mask[:, i], key)
            objective = jnp.exp(log_alpha_i) * logp_i - q_of(actions.at[:, i].set(a_i))
        w = batch.alive[:, i]
        return jnp.sum(objective * w) / jnp.maximum(w.sum(), 1.0), logp_i

    def _temperature_step(self, log_alpha, alpha_opt, j, logp, target, alive):
        """Appendix H.1 for temperature j: J(alpha) = E[-alpha (log pi + H)], on the log scale,
        its gradient averaged over the alive (sample, agent) pairs of ``logp``/``target``/``alive``."""
        g = -jnp.sum((jax.lax.stop_gradient(logp) + target) * alive) / jnp.maximum(alive.sum(), 1.0)
        upd, a_opt = self.alpha_tx.update(g, _index(alpha_opt, j), log_alpha[j])
        return log_alpha.at[j].add(upd), jax.tree.map(lambda x, v: x.at[j].set(v), alpha_opt, a_opt)

    def improve_actors(self, ts: HASACState, critic_params, value_norm, batch: Batch, key):
        """Eq. 10 for every agent on the sequential template. Agent perm[m] minimises
        E[alpha log pi(a|o) - min_j Q_j(s, a^{perm[:m]}_new, a, a^{rest}_old)] where
        a^{perm[:m]}_new are fresh samples of the agents already updated in this pass and
        a^{rest}_old the pre-update samples of the others. Also returns a trace of what every
        position saw (``perm``, ``pre_actions``, ``seen``, ``resample_keys``) for tests."""
        cfg, slots = self.cfg, self.slots
        k_perm, k_pre, key = jax.random.split(key, 3)
        perm = order(k_perm, self.n, cfg.fixed_order)
        # pre-update actions of the agents at positions 1..n-1; the first agent's own update
        # replaces its action before anyone plays against it, so it is not sampled (zeros)
        actions = jnp.zeros(batch.action_mask.shape)
        pre_keys = jax.random.split(k_pre, self.n)
        for m in range(1, self.n):
            i = perm[m]
            a_i, _ = self._sample_agent(slots.get(ts.actor_params, i), i, batch.obs[:, i], batch.action_mask[:, i], pre_keys[m])
            actions = actions.at[:, i].set(a_i)
        pre_actions = actions = jax.lax.stop_gradient(actions)
        target_entropy = self.target_entropies(batch.action_mask, ts.updates, ts.ader_beta)

        def agent_step(m, i, carry):
            actor_params, actor_opt, log_alpha, alpha_opt, actions, key, losses, logps, seen, rkeys = carry
            seen = seen.at[m].set(actions)
            # unshared, agent i's parameters are untouched until its turn: reading them from ts
            # (the pre-sampling's source) lets XLA reuse that forward pass in the loss's
            source_params, source_opt = (actor_params, actor_opt) if cfg.share_param else (ts.actor_params, ts.actor_opt)
            params, opt = slots.get(source_params, i), slots.get(source_opt, i)
            a_idx = 0 if cfg.temperature == "shared" else i
            for _ in range(cfg.mini_epochs):
                key, k = jax.random.split(key)
                (loss, logp_i), g = jax.value_and_grad(self.actor_loss, has_aux=True)(
                    params, i, critic_params, value_norm, batch, actions, k, log_alpha[a_idx])
                upd, opt = self.actor_tx.update(g, opt, params)
                params = optax.apply_updates(params, upd)
            actor_params, actor_opt = slots.put(actor_params, i, params), slots.put(actor_opt, i, opt)
            if cfg.auto_alpha and cfg.temperature == "per_agent":
                log_alpha, alpha_opt = self._temperature_step(log_alpha, alpha_opt, i, logp_i, target_entropy[:, i],
                                                              batch.alive[:, i])
            # the updated agent's fresh action is what the next agents in perm play against
            # (the last agent's is unused: dropped when the loop is unrolled)
            key, k = jax.random.split(key)
            a_new = self._sample_agent(params, i, batch.obs[:, i], batch.action_mask[:, i], k)[0]
            actions = actions.at[:, i].set(jax.lax.stop_gradient(a_new))
            return (actor_params, actor_opt, log_alpha, alpha_opt, actions, key,
                    losses.at[i].set(loss), logps.at[:, i].set(jax.lax.stop_gradient(logp_i)),
                    seen, rkeys.at[m].set(k))

        carry = (ts.actor_params, ts.actor_opt, ts.log_alpha, ts.alpha_opt, actions, key,
                 jnp.zeros(self.n), jnp.zeros((batch.obs.shape[0], self.n)),
                 jnp.zeros((self.n, *actions.shape)), jnp.zeros((self.n, *key.shape), key.dtype))
        out = sequential(self.n, perm, agent_step, carry)
        actor_params, actor_opt, log_alpha, alpha_opt, _, _, losses, logps, seen, rkeys = out
        trace = {"perm": perm, "pre_actions": pre_actions, "seen": seen, "resample_keys": rkeys}
        return actor_params, actor_opt, log_alpha, alpha_opt, losses, logps, trace

    def soft_q_target(self, ts: HASACState, batch: Batch, key):
        """The soft TD target of Eq. 9 (n-step: see the module docstring), de-normalised, with a
        fresh joint action a' ~ pi(s'):
        y = R^(k) + gamma^k (1 - term) (min_j Q'_j(s', a') - sum_i alpha_i log pi_i(a'_i)).
        Also returns the twin target values [2, B] and the entropy term [B] (for diagnostics)."""
        next_a, next_logp = self.sample_all(ts.actor_params, batch.next_obs, batch.next_action_mask, key)
        next_q = self._q(ts.target_params, batch.next_state, next_a, ts.value_norm)
        entropy_term = jnp.sum(self._alpha(ts.log_alpha) * next_logp * batch.next_alive, -1)
        return batch.reward + batch.discount * (next_q.min(0) - entropy_term), next_q, entropy_term

    def update(self, ts: HASACState, batch: Batch, key):
        cfg = self.cfg
        k_next, k_actor = jax.random.split(key)

        # --- soft policy evaluation (Eq. 9)
        value_norm, y = ts.value_norm.targets(self.soft_q_target(ts, batch, k_next)[0], cfg.value_norm)
        critic_params, critic_opt, critic_loss, q_pred = self.critic.fit(ts.critic_params, ts.critic_opt, batch.state,
                                                                         batch.action, y)

        # --- heterogeneous-agent soft policy improvement (Eq. 10)
        actor_params, actor_opt, log_alpha, alpha_opt, actor_losses, logps, _ = self.improve_actors(
            ts, critic_params, value_norm, batch, k_actor)

        if cfg.auto_alpha and cfg.temperature == "shared":
            # one temperature on the joint entropy: target sum_i H_i
            log_alpha, alpha_opt = self._temperature_step(log_alpha, alpha_opt, 0, logps,
                                                          self.target_entropies(batch.action_mask, ts.updates, ts.ader_beta), batch.alive)

        target_params = optax.incremental_update(critic_params, ts.target_params, cfg.polyak)
        avg_actor_params = (None if cfg.actor_polyak is None
                            else optax.incremental_update(actor_params, ts.avg_actor_params, cfg.actor_polyak))
        ader_beta, ader_metric = ts.ader_beta, None
        if cfg.ader:  # Algorithm 1's last step: the target entropies for the next update (B.7, B.8)
            ader_metric = self.value_entropy_gradient(actor_params, critic_params, value_norm, batch,
                                                      jax.random.fold_in(k_actor, 1))
            ader_beta = ader_weights(ader_beta, ader_metric, self.total_entropy, cfg.ader_xi, cfg.ader_temperature)
        new = HASACState(actor_params, actor_opt, critic_params, target_params, critic_opt, log_alpha, alpha_opt,
                         value_norm, ts.updates + 1, avg_actor_params, ader_beta)
        alive_n = jnp.maximum(batch.alive.sum(0), 1.0)
        metrics = {
            "critic_loss": critic_loss,
            "actor_loss": actor_losses.mean(),
            "q_mean": q_pred.mean(),
            "alpha": self._alpha(log_alpha),  # [n]
            "entropy": -(logps * batch.alive).sum(0) / alive_n,  # [n], sample estimate of H(pi_i)
        }
        if cfg.ader:
            metrics.update(target_entropy=ader_beta * self.total_entropy, ader_metric=ader_metric)
        return new, metrics

    def value_entropy_gradient(self, actor_params, critic_params, value_norm, batch: Batch, key):
        """E[dV/dH_i] per agent [n] over the batch's states: V(s) = E_{a~pi}[min_j Q_j(s, a)] with
        one reparameterised joint sample per state, agent i's Gaussian widened by delta_i / dim A_i
        in log sigma (its entropy before the squashing rises by delta_i), d/d delta at 0."""
        keys = jax.random.split(key, self.n)
        dims = self.dim_mask.sum(-1)

        def value(delta):
            joint = jnp.stack([tanh_gaussian_sample(self._agent_out(self.slots.get(actor_params, i), i, batch.obs[:, i]),
                                                    self.dim_mask[i], keys[i], log_std_shift=delta[i] / dims[i])[0]
                               for i in range(self.n)], -2)
            return self._q(critic_params, batch.state, joint, value_norm).min(0).mean()
        return jax.grad(value)(jnp.zeros(self.n))

    # ------------------------------------------------------------------ inspection
    def policy_probs(self, state: HASACState, obs, action_mask):
        """Discrete agents' action probabilities [..., n, A] (for matrix-game checks)."""
        per_agent = self.slots.per_agent(state.actor_params)
        outs = jax.vmap(self._agent_out, in_axes=(0, 0, -2), out_axes=-2)(per_agent, jnp.arange(self.n), obs)
        m = self.dim_mask * action_mask
        return jnp.exp(jax.nn.log_softmax(jnp.where(m > 0, outs, -1e9), -1)) * m
