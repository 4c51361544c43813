"""Heterogeneous-Agent Soft Actor-Critic (HASAC paper, Algorithm 2; Equations 9-10).

Pure functions on a :class:`HASACState`:

    init(key) -> state
    act(state, obs, action_mask, key, deterministic) -> actions      (padded, see networks.py)
    update(state, batch, key) -> (state, metrics)

One update = the twin soft-Q step (Eq. 9 with n-step targets), then the sequential actor
update of Eq. 10 over a random permutation of the agents (``fixed_order`` for the ablation),
each agent playing against the actions just re-sampled from the agents already updated in
this pass and the pre-update actions of the others; then the temperatures (Appendix H.1)
and the Polyak-averaged target critics.

Temperatures. ``per_agent``: agent i's actor loss uses alpha_i and the critic's entropy term
is sum_i alpha_i log pi_i; ``shared``: one alpha for both. The reference implementation
additionally learns a third, critic-only temperature on the joint entropy; we do not (the
soft Bellman operator of Eq. 5 has one temperature per policy term). Auto-tuned temperatures
start at the configured ``alpha``; the reference's all start at 1 (log alpha = 0), whatever
its config files say.

Discrete actor gradient. ``gumbel`` (the reference): a straight-through Gumbel-softmax
sample through the critic. It is biased: on the HASAC matrix game at the initial policy
(0.6, 0.2, 0.2) with an exact critic it points towards C while the true gradient of Eq. 10
points towards A. ``exact``: the expectation over the agent's own choices, one critic
evaluation per choice (as in SAC-Discrete).

Default target entropies: continuous -dim(A_i) (SAC); discrete ``ratio * log |A_i|``
(SAC-Discrete, ratio = ``discrete_target_entropy_ratio``, default 0.98 as the reference code
intends). The reference code actually computes log(1/prod(Discrete.shape)) = log 1 = 0 for
discrete spaces (a shape bug); ``discrete_target_entropy_ratio=0`` reproduces that.
With action masks (SMAX) ``ratio * log |A_i|`` can exceed the entropy reachable in a state
where few actions are available; ``discrete_target_entropy_over="available"`` makes the
target per state, ``ratio * log |A_i(s)|`` with A_i(s) the available actions.
``discrete_target_entropy_ratio_final`` (not in the papers) anneals the ratio linearly from
``discrete_target_entropy_ratio`` at the first update to that value at the last: exploration
early, a sharper policy late. With an auto-tuned temperature, a final target below the
entropy the policy keeps without any entropy term drives log alpha down without bound (SMAX
3m, 0.3 -> 0.1: alpha 8e-5 at 800k, 0 in float32 from 980k of 1M steps; docs/benchmarks.md).

Averaged actor (``actor_polyak``, not in the papers): a Polyak average of the actors'
weights, updated after every update like the target critics. Evaluation plays it
(``act(..., averaged=True)``); training still samples the online actors, so the learning
is unchanged. Late in a run the online policy's win rate moves from checkpoint to
checkpoint; the average is meant to be the steadier policy to deploy.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from meharl.config import Config
from meharl.envs.core import EnvSpec
from meharl.networks import Actor, QNetwork, masked_log_softmax, policy_sample


class Batch(NamedTuple):
    """n-step transitions (see buffer.py): everything per sample, leading axis B."""

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


class ValueNorm(NamedTuple):
    """Running mean/variance of critic targets with debiasing (reference ValueNorm, beta 0.99999)."""

    mean: jax.Array
    mean_sq: jax.Array
    debias: jax.Array

    @staticmethod
    def create():
        return ValueNorm(jnp.zeros(()), jnp.zeros(()), jnp.zeros(()))

    def stats(self):
        d = jnp.maximum(self.debias, 1e-5)
        mean, mean_sq = self.mean / d, self.mean_sq / d
        return mean, jnp.sqrt(jnp.maximum(mean_sq - mean**2, 1e-2))

    def update(self, x, beta=0.99999):
        return ValueNorm(
            self.mean * beta + x.mean() * (1 - beta),
            self.mean_sq * beta + jnp.square(x).mean() * (1 - beta),
            self.debias * beta + (1 - beta),
        )

    def normalize(self, x):
        mean, std = self.stats()
        return (x - mean) / std

    def denormalize(self, x):
        mean, std = self.stats()
        return x * std + mean


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


def default_target_entropy(spec: EnvSpec, cfg: Config) -> np.ndarray:
    if cfg.target_entropy is not None:
        return np.full(spec.n_agents, cfg.target_entropy, np.float32)
    return np.array(
        [cfg.discrete_target_entropy_ratio * np.log(a.action_dim) if a.discrete else -float(a.action_dim) for a in spec.agents],
        np.float32,
    )


def _index(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def _set(tree, i, value):
    return jax.tree.map(lambda x, v: x.at[i].set(v), tree, value)


class HASAC:
    def __init__(self, spec: EnvSpec, cfg: Config, total_updates: int = 1):
        if cfg.share_param and not spec.homogeneous:
            raise ValueError(
                f"share_param=true needs agents with identical spaces; {spec.name} has {sorted(set(spec.agents), key=str)}"
            )
        if cfg.init_policy is not None and not (spec.discrete and all(a.action_dim == len(cfg.init_policy) for a in spec.agents)):
            raise ValueError(f"init_policy={cfg.init_policy} needs discrete agents with {len(cfg.init_policy)} actions each")
        if not spec.discrete or cfg.target_entropy is not None:
            why = "its agents are continuous" if not spec.discrete else f"target_entropy={cfg.target_entropy} overrides it"
            if cfg.discrete_target_entropy_over == "available":
                raise ValueError(f"discrete_target_entropy_over=available has no effect on {spec.name}: {why}; "
                                 "use discrete_target_entropy_over=action_space")
            if cfg.discrete_target_entropy_ratio_final is not None:
                raise ValueError(f"discrete_target_entropy_ratio_final={cfg.discrete_target_entropy_ratio_final} has no "
                                 f"effect on {spec.name}: {why}; leave it unset (none)")
        self.spec, self.cfg = spec, cfg
        self.n = spec.n_agents
        self.discrete = spec.discrete
        self.actor = Actor(cfg.hidden_sizes, spec.max_action_dim, spec.discrete, cfg.feature_norm)
        self.critic = QNetwork(cfg.hidden_sizes, cfg.critic_layer_norm)
        self.obs_mask = jnp.asarray(spec.obs_mask)
        self.dim_mask = jnp.asarray(spec.action_dim_mask)
        self.n_params = 1 if cfg.share_param else self.n
        self.param_index = np.zeros(self.n, np.int32) if cfg.share_param else np.arange(self.n)
        self.target_entropy = jnp.asarray(default_target_entropy(spec, cfg))
        self.per_state_target = cfg.discrete_target_entropy_over == "available"  # checked above: it applies
        ratio, final = cfg.discrete_target_entropy_ratio, cfg.discrete_target_entropy_ratio_final
        # the discrete ratio after `updates` updates (checked above: set only where it applies)
        self.target_ratio = (lambda updates: ratio) if final is None else optax.linear_schedule(ratio, final, max(total_updates, 1))

        def lr(base, steps):
            return optax.linear_schedule(base, 0.0, max(steps, 1)) if cfg.lr_decay else base

        # an actor optimiser steps mini_epochs times per update, n times more when shared
        actor_steps = total_updates * cfg.mini_epochs * (self.n if cfg.share_param else 1)
        self.actor_tx = optax.adam(lr(cfg.actor_lr, actor_steps))
        self.critic_tx = optax.adam(lr(cfg.critic_lr, total_updates))
        self.alpha_tx = optax.adam(cfg.alpha_lr)

    # ------------------------------------------------------------------ init / act
    def init(self, key) -> HASACState:
        cfg, spec = self.cfg, self.spec
        k_actor, k_critic = jax.random.split(key)
        obs = jnp.zeros((spec.max_obs_dim,))
        actor_params = jax.vmap(lambda k: self.actor.init(k, obs, self.obs_mask[0]))(jax.random.split(k_actor, self.n_params))
        if cfg.init_policy is not None:
            # start every agent at the given policy: output weights ~0 (gain 0.01), bias = log p
            head = jnp.log(jnp.asarray(cfg.init_policy, jnp.float32))
            params = actor_params["params"]["MLP_0"]
            last = max(k for k in params if k.startswith("Dense_"))
            params[last]["kernel"] = jnp.zeros_like(params[last]["kernel"])
            params[last]["bias"] = jnp.broadcast_to(head, params[last]["bias"].shape)
        state, act = jnp.zeros((spec.state_dim,)), jnp.zeros((self.n, spec.max_action_dim))
        critic_params = jax.vmap(lambda k: self.critic.init(k, state, act))(jax.random.split(k_critic, 2))
        n_alpha = 1 if cfg.temperature == "shared" else self.n
        log_alpha = jnp.full((n_alpha,), jnp.log(jnp.maximum(cfg.alpha, 1e-30)), jnp.float32)
        return HASACState(
            actor_params=actor_params,
            actor_opt=jax.vmap(self.actor_tx.init)(actor_params),
            critic_params=critic_params,
            target_params=critic_params,
            critic_opt=self.critic_tx.init(critic_params),
            log_alpha=log_alpha,
            alpha_opt=jax.vmap(self.alpha_tx.init)(log_alpha),
            value_norm=ValueNorm.create(),
            updates=jnp.zeros((), jnp.int32),
            avg_actor_params=None if cfg.actor_polyak is None else actor_params,
        )

    def _agent_out(self, params, i, obs_i):
        return self.actor.apply(params, obs_i, self.obs_mask[i])

    def _sample_agent(self, params, i, obs_i, avail_i, key, deterministic=False):
        out = self._agent_out(params, i, obs_i)
        return policy_sample(out, self.discrete, self.dim_mask[i], avail_i, key, deterministic)

    def sample_all(self, actor_params, obs, avail, key, deterministic=False):
        """All agents at once. obs [..., n, O], avail [..., n, A] -> actions [..., n, A], logp [..., n]."""
        keys = jax.random.split(key, self.n)
        outs = [self._sample_agent(_index(actor_params, int(self.param_index[i])), i, obs[..., i, :], avail[..., i, :], keys[i], deterministic) for i in range(self.n)]
        return jnp.stack([o[0] for o in outs], -2), jnp.stack([o[1] for o in outs], -1)

    def act(self, state: HASACState, obs, action_mask, key, deterministic=False, averaged=False):
        """Actions of all agents; ``averaged``: the averaged actor's where there is one (evaluation)."""
        params = state.avg_actor_params if averaged and state.avg_actor_params is not None else state.actor_params
        return self.sample_all(params, obs, action_mask, key, deterministic)[0]

    def random_actions(self, action_mask, key):
        """Warmup: uniform over [-1, 1]^d (continuous) or over the available choices."""
        if self.discrete:
            logits = jnp.zeros(action_mask.shape)
            return jax.nn.one_hot(jax.random.categorical(key, jnp.where(action_mask * self.dim_mask > 0, logits, -1e9)), action_mask.shape[-1])
        return jax.random.uniform(key, action_mask.shape, minval=-1.0, maxval=1.0) * self.dim_mask

    def env_actions(self, actions):
        """Padded policy actions -> what the env's ``step`` takes (indices for discrete)."""
        return jnp.argmax(actions, -1) if self.discrete else actions

    def target_entropies(self, action_mask, updates=0):
        """Target entropy of every agent in every sample, [B, n], after `updates` updates (see
        the module docstring)."""
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

    def _twin(self, critic_params, state, joint_action):
        # two plain matmul chains are faster on CPU than one batched (vmapped) chain
        return jnp.stack([self.critic.apply(_index(critic_params, j), state, joint_action) for j in range(2)])

    def _q(self, critic_params, state, joint_action, value_norm):
        q = self._twin(critic_params, state, joint_action)
        return value_norm.denormalize(q) if self.cfg.value_norm else q

    def _critic_loss(self, critic_params, batch, y):
        q = self._twin(critic_params, batch.state, batch.action)
        err = q - y[None]
        if self.cfg.critic_loss == "huber":
            per = optax.huber_loss(err, delta=self.cfg.huber_delta)
        else:
            per = 0.5 * jnp.square(err)
        return per.mean(-1).sum(), q

    def actor_loss(self, params, i, critic_params, value_norm, batch: Batch, actions, key, log_alpha_i):
        """Eq. 10's objective for agent i, alive-weighted: E[alpha_i log pi_i(a_i|o_i) - min_j Q_j(s, a_i, a^{-i})],
        the other agents playing ``actions`` [B, n, A]. Returns (loss, log pi_i [B])."""
        if self.discrete and self.cfg.discrete_actor_gradient == "exact":
            # E_{a~pi_i}[alpha log pi_i(a) - Q(s, a, a^{-i})] summed over agent i's choices
            logits = self._agent_out(params, i, batch.obs[:, i])
            mask = self.dim_mask[i] * batch.action_mask[:, i]
            logp_all = masked_log_softmax(logits, mask)
            pi = jnp.exp(logp_all) * mask
            onehots = jnp.eye(self.spec.max_action_dim)
            q_all = jax.vmap(lambda e: self._q(critic_params, batch.state, actions.at[:, i].set(e), value_norm).min(0),
                             out_axes=-1)(onehots)  # [B, A]
            logp_i = jnp.sum(pi * jnp.where(mask > 0, logp_all, 0.0), -1)  # E[log pi_i], for alpha and metrics
            objective = jnp.exp(log_alpha_i) * logp_i - jnp.sum(pi * q_all, -1)
        else:
            # reparameterised sample (continuous) or straight-through Gumbel-softmax (discrete)
            a_i, logp_i = self._sample_agent(params, i, batch.obs[:, i], batch.action_mask[:, i], key)
            q = self._q(critic_params, batch.state, actions.at[:, i].set(a_i), value_norm).min(0)
            objective = jnp.exp(log_alpha_i) * logp_i - q
        w = batch.alive[:, i]
        return jnp.sum(objective * w) / jnp.maximum(w.sum(), 1.0), logp_i

    def improve_actors(self, ts: HASACState, critic_params, value_norm, batch: Batch, key):
        """Eq. 10 for every agent in a random order ``perm`` (arange when ``fixed_order``).
        Agent perm[m] minimises E[alpha log pi(a|o) - min_j Q_j(s, a^{perm[:m]}_new, a, a^{rest}_old)]
        where a^{perm[:m]}_new are fresh samples of the agents already updated in this pass and
        a^{rest}_old the pre-update samples of the others. Also returns a trace of what every
        position saw (``perm``, ``pre_actions``, ``seen``, ``resample_keys``) for tests."""
        cfg = self.cfg
        k_perm, k_pre, key = jax.random.split(key, 3)
        perm = jnp.arange(self.n) if cfg.fixed_order else jax.random.permutation(k_perm, self.n)
        # pre-update actions of the agents at positions 1..n-1; the first agent's own update
        # replaces its action before anyone plays against it, so it is not sampled (zeros)
        actions = jnp.zeros(batch.action_mask.shape)
        pre_keys = jax.random.split(k_pre, self.n)
        for m in range(1, self.n):
            i = perm[m]
            params_i = _index(ts.actor_params, jnp.asarray(self.param_index)[i])
            a_i, _ = self._sample_agent(params_i, i, batch.obs[:, i], batch.action_mask[:, i], pre_keys[m])
            actions = actions.at[:, i].set(a_i)
        pre_actions = actions = jax.lax.stop_gradient(actions)
        target_entropy = self.target_entropies(batch.action_mask, ts.updates)

        def agent_step(m, carry):
            actor_params, actor_opt, log_alpha, alpha_opt, actions, key, losses, logps, seen, rkeys = carry
            i = perm[m]
            seen = seen.at[m].set(actions)
            p = jnp.asarray(self.param_index)[i]
            # unshared, agent i's parameters are untouched until its turn: reading them from ts
            # (the pre-sampling's source) lets XLA reuse that forward pass in the loss's
            if cfg.share_param:
                params, opt = _index(actor_params, p), _index(actor_opt, p)
            else:
                params, opt = _index(ts.actor_params, p), _index(ts.actor_opt, p)
            a_idx = 0 if cfg.temperature == "shared" else i
            for _ in range(cfg.mini_epochs):
                key, k = jax.random.split(key)
                (loss, logp_i), g = jax.value_and_grad(self.actor_loss, has_aux=True)(
                    params, i, critic_params, value_norm, batch, actions, k, log_alpha[a_idx])
                upd, opt = self.actor_tx.update(g, opt, params)
                params = optax.apply_updates(params, upd)
            actor_params, actor_opt = _set(actor_params, p, params), _set(actor_opt, p, opt)
            if cfg.auto_alpha and cfg.temperature == "per_agent":
                # Appendix H.1: J(alpha_i) = E[-alpha_i (log pi_i + H_i)], on the log scale
                w = batch.alive[:, i]
                g = -jnp.sum((jax.lax.stop_gradient(logp_i) + target_entropy[:, i]) * w) / jnp.maximum(w.sum(), 1.0)
                upd, a_opt = self.alpha_tx.update(g, _index(alpha_opt, i), log_alpha[i])
                log_alpha = log_alpha.at[i].add(upd)
                alpha_opt = _set(alpha_opt, i, a_opt)
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
        # unrolled for few agents (XLA then shares the forward passes above and drops the last
        # resample), rolled beyond so that 17 agents compile one body
        out = jax.lax.fori_loop(0, self.n, agent_step, carry, unroll=self.n <= 8)
        actor_params, actor_opt, log_alpha, alpha_opt, _, _, losses, logps, seen, rkeys = out
        trace = {"perm": perm, "pre_actions": pre_actions, "seen": seen, "resample_keys": rkeys}
        return actor_params, actor_opt, log_alpha, alpha_opt, losses, logps, trace

    def soft_q_target(self, ts: HASACState, batch: Batch, key):
        """Eq. 9's n-step target, de-normalised, with a fresh joint action a' ~ pi(s'):
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
        y = self.soft_q_target(ts, batch, k_next)[0]
        value_norm = ts.value_norm
        if cfg.value_norm:
            value_norm = value_norm.update(y)
            y = value_norm.normalize(y)
        y = jax.lax.stop_gradient(y)
        (critic_loss, q_pred), grads = jax.value_and_grad(self._critic_loss, has_aux=True)(ts.critic_params, batch, y)
        upd, critic_opt = self.critic_tx.update(grads, ts.critic_opt, ts.critic_params)
        critic_params = optax.apply_updates(ts.critic_params, upd)

        # --- heterogeneous-agent soft policy improvement (Eq. 10)
        actor_params, actor_opt, log_alpha, alpha_opt, actor_losses, logps, _ = self.improve_actors(
            ts, critic_params, value_norm, batch, k_actor)

        if cfg.auto_alpha and cfg.temperature == "shared":
            # one temperature on the joint entropy: target sum_i H_i
            w = batch.alive
            g = -jnp.sum(((logps + self.target_entropies(batch.action_mask, ts.updates)) * w).sum(-1)) / logps.shape[0]
            upd, a_opt = self.alpha_tx.update(g, _index(alpha_opt, 0), log_alpha[0])
            log_alpha = log_alpha.at[0].add(upd)
            alpha_opt = _set(alpha_opt, 0, a_opt)

        target_params = optax.incremental_update(critic_params, ts.target_params, cfg.polyak)
        avg_actor_params = (None if cfg.actor_polyak is None
                            else optax.incremental_update(actor_params, ts.avg_actor_params, cfg.actor_polyak))
        new = HASACState(actor_params, actor_opt, critic_params, target_params, critic_opt, log_alpha, alpha_opt,
                         value_norm, ts.updates + 1, avg_actor_params)
        alive_n = jnp.maximum(batch.alive.sum(0), 1.0)
        metrics = {
            "critic_loss": critic_loss,
            "actor_loss": actor_losses.mean(),
            "q_mean": q_pred.mean(),
            "alpha": self._alpha(log_alpha),  # [n]
            "entropy": -(logps * batch.alive).sum(0) / alive_n,  # [n], sample estimate of H(pi_i)
        }
        return new, metrics

    # ------------------------------------------------------------------ inspection
    def policy_probs(self, state: HASACState, obs, action_mask):
        """Discrete agents' action probabilities [..., n, A] (for matrix-game checks)."""
        per_agent = _index(state.actor_params, self.param_index)
        outs = jax.vmap(self._agent_out, in_axes=(0, 0, -2), out_axes=-2)(per_agent, jnp.arange(self.n), obs)
        m = self.dim_mask * action_mask
        return jnp.exp(jax.nn.log_softmax(jnp.where(m > 0, outs, -1e9), -1)) * m
