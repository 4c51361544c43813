"""The on-policy members of the template: what HAPPO, HATRPO, HAA2C and MAPPO share.

One update of :class:`OnPolicyHA` on a rollout (``rollout.py``), HARL Algorithm Template 2
with on-policy sampling:

1. Advantages. With a temperature alpha > 0 (MEHAML) the rewards are soft,
   r~_t = r_t - alpha sum_i log pi_i(a_i|o_i), so the critic learns the soft V of the HASAC
   paper (Eq. 5); GAE over r~ gives A^V. An agent's objective (HASAC paper Eq. 10) is the soft
   Q minus alpha times its own log-probability, so the current step's entropy terms are
   added back, A = A^V + alpha sum_i log pi_i = Q_soft - V_soft, and each agent's own term
   enters its loss exactly, as alpha H(pi_i). With alpha = 0 this is plain GAE (HAML).
   Advantages are normalised to mean 0 and std 1 (as the reference); the temperature is
   divided by the same std, so normalising does not change the trade-off.
2. Actors on the sequential template (``sequential.py``): a fresh random order; agent
   perm[m] maximises its surrogate weighted by M, the product of the ratios
   pi_new / pi_old of the agents already updated (HARL Algorithm 4's compound factor); then
   M is multiplied by its own new ratio (no gradient). The surrogate and its constraint are
   the subclass's (``agent_update``): the clipped ratio (HAPPO), the plain ratio (HAA2C), a
   KL ball (HATRPO). MAPPO updates every agent against M = 1 (simultaneous).
3. The centralised V critic: ``critic_epoch`` epochs of ``critic_num_mini_batch``
   minibatches, the clipped value loss of the reference (the max of the clipped and
   unclipped losses), MSE or Huber, value normalisation, gradient clipping.

Recurrent policies (``use_recurrent_policy``): GRU actors and critic act step by step,
storing the hidden state each had before a step; training replays the rollout in chunks of
``data_chunk_length`` steps from the stored state of each chunk's first step, resetting it
wherever an episode starts (the reference's ``data_chunk_length`` scheme).

Differences from the HARL reference (docs/algorithms/on-policy.md): a time limit
bootstraps from the final observation's value (``truncation=zero_advantage`` gives the
reference's zeroed advantage); the value normaliser is updated once per iteration with all
returns, not once per minibatch; networks use PyTorch's default initialisation, not
orthogonal (see networks.py).
"""
from __future__ import annotations

import typing
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from meharl.algorithms.base import Algorithm, StochasticPolicyConfig, ValueNorm, regression_loss, set_initial_policy
from meharl.algorithms.sequential import AgentSlots, order, sequential
from meharl.config import key
from meharl.envs.core import EnvSpec
from meharl.networks import Distribution, RecurrentPolicy, RecurrentV, StochasticPolicy, VNetwork
from meharl.rollout import TRUNCATIONS, Rollout, gae


@dataclass(frozen=True)
class OnPolicyConfig(StochasticPolicyConfig):
    """HARL's on-policy defaults (algos_cfgs/happo.yaml and siblings)."""

    episode_length: int = key(200, "vector steps of each rollout (one iteration)", "positive")
    gae_lambda: float = key(0.95, "lambda of GAE", "prob")
    truncation: str = key("bootstrap", "time limits: bootstrap from the final observation's value, or zero the "
                          "advantage (the reference)", choices=TRUNCATIONS)
    feature_norm: bool = key(True, "LayerNorm on the actors' and the critic's inputs")
    value_norm: bool = key(True, "normalise the critic's targets by their running mean and std")
    critic_loss: str = key("huber", "critic regression loss", choices=("mse", "huber"))
    critic_epoch: int = key(5, "critic epochs per iteration", "positive")
    critic_num_mini_batch: int = key(1, "critic minibatches per epoch", "positive")
    actor_num_mini_batch: int = key(1, "actor minibatches per epoch", "positive")
    use_clipped_value_loss: bool = key(True, "clip the value change to value_clip_param (PPO-style)")
    value_clip_param: float = key(0.2, "clip range of the value change", "positive")
    entropy_coef: float = key(0.01, "entropy bonus of the actors (besides alpha)", "nonneg")
    max_grad_norm: float = key(10.0, "gradient clipping by global norm", "positive")
    opti_eps: float = key(1e-5, "Adam epsilon", "positive")
    std_x_coef: float = key(1.0, "Gaussian std = sigmoid(log_std / std_x_coef) * std_y_coef", "positive")
    std_y_coef: float = key(0.5, "see std_x_coef", "positive")
    normalize_advantages: bool = key(True, "normalise advantages to mean 0, std 1 per iteration")
    use_policy_active_masks: bool = key(True, "average the actor losses over the samples where the agent is alive "
                                        "(false: over all samples, dead agents' included)")
    use_recurrent_policy: bool = key(False, "GRU actors and critic (the last hidden width), trained on chunks")
    data_chunk_length: int = key(10, "recurrent: steps of each training chunk, its hidden state the one stored "
                                 "at collection", "positive")

    def validate(self):
        super().validate()
        if self.use_recurrent_policy and self.episode_length % self.data_chunk_length:
            raise ValueError(f"invalid data_chunk_length={self.data_chunk_length}: it must divide "
                             f"episode_length={self.episode_length}")
        # minibatches split the rollout's samples, or its chunks when recurrent
        units = self.n_envs * self.episode_length // (self.data_chunk_length if self.use_recurrent_policy else 1)
        for name in ("actor_num_mini_batch", "critic_num_mini_batch"):
            if getattr(self, name) > units:
                raise ValueError(f"invalid {name}={getattr(self, name)}: more minibatches than the {units} "
                                 f"{'chunks' if self.use_recurrent_policy else 'samples'} of a rollout")


class OnPolicyState(typing.NamedTuple):
    actor_params: dict  # one slot per agent (1 when shared)
    actor_opt: optax.OptState
    critic_params: dict
    critic_opt: optax.OptState
    value_norm: ValueNorm
    updates: jax.Array


class AgentData(typing.NamedTuple):
    """One agent's samples of the rollout in C chunks of L consecutive steps (L = 1 without
    recurrence): leading axes [C, L]."""

    obs: jax.Array  # [C, L, O]
    avail: jax.Array  # [C, L, A]
    action: jax.Array  # [C, L, A]
    old_logp: jax.Array  # [C, L]
    alive: jax.Array  # [C, L]
    adv: jax.Array  # [C, L] normalised advantage
    factor: jax.Array  # [C, L] M, the compound ratio of the agents updated before this one
    h0: jax.Array | None = None  # [C, H] recurrent: the hidden state stored at each chunk's first step
    start: jax.Array | None = None  # [C, L] recurrent: 1 where an episode starts


def minibatches(key, n_samples: int, n_minibatch: int):
    """Indices [n_minibatch, n_samples // n_minibatch] of a random split (the remainder is dropped,
    as in the reference)."""
    size = n_samples // n_minibatch
    return jax.random.permutation(key, n_samples)[: n_minibatch * size].reshape(n_minibatch, size)


def masked_mean(x, w):
    return jnp.sum(x * w) / jnp.maximum(jnp.sum(w), 1.0)


class OnPolicyHA(Algorithm):
    learner = "on_policy"
    simultaneous: typing.ClassVar[bool] = False  # MAPPO: every agent against M = 1
    metrics = ("value_loss", "policy_loss", "entropy", "kl")

    def __init__(self, spec: EnvSpec, cfg, total_updates: int = 1):
        super().__init__(spec, cfg, total_updates)
        self.dist = Distribution(spec.discrete)
        self.recurrent = cfg.use_recurrent_policy
        self.chunk_length = cfg.data_chunk_length if self.recurrent else 1
        self.hidden = cfg.hidden_sizes[-1]  # the GRU's width
        policy = RecurrentPolicy if self.recurrent else StochasticPolicy
        self.actor = policy(cfg.hidden_sizes, spec.max_action_dim, spec.discrete, cfg.feature_norm,
                            cfg.std_x_coef, cfg.std_y_coef)
        self.critic = (RecurrentV if self.recurrent else VNetwork)(cfg.hidden_sizes, cfg.feature_norm)
        self.slots = AgentSlots(self.n, cfg.share_param)
        self.actor_tx = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm),
                                    optax.adam(self.lr(cfg.actor_lr, total_updates * self.actor_steps_per_update()),
                                               eps=cfg.opti_eps))
        self.critic_tx = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm),
                                     optax.adam(self.lr(cfg.critic_lr, total_updates * cfg.critic_epoch *
                                                        cfg.critic_num_mini_batch), eps=cfg.opti_eps))

    def actor_epochs(self) -> int:
        """Epochs of gradient steps on the surrogate per iteration (the algorithm's key)."""
        return 1

    def surrogate(self):
        """The plug-in: ``surrogate(ratio, advantage)`` each agent maximises, M-weighted."""
        raise NotImplementedError

    def actor_steps_per_update(self) -> int:
        """Optimiser steps one actor slot takes per update (for the learning-rate decay)."""
        cfg = self.cfg
        return self.actor_epochs() * cfg.actor_num_mini_batch * (self.n if cfg.share_param else 1)

    # ------------------------------------------------------------------ init / act
    def init(self, key) -> OnPolicyState:
        spec = self.spec
        k_actor, k_critic = jax.random.split(key)
        obs, s = jnp.zeros((spec.max_obs_dim,)), jnp.zeros((spec.state_dim,))
        h = (jnp.zeros((self.hidden,)), jnp.zeros(())) if self.recurrent else ()
        actor_params = jax.vmap(lambda k: self.actor.init(k, obs, self.obs_mask[0], *h))(
            jax.random.split(k_actor, self.slots.n_slots))
        if self.cfg.init_policy is not None:
            actor_params = set_initial_policy(actor_params, self.cfg.init_policy)
        critic_params = self.critic.init(k_critic, s, *h)
        return OnPolicyState(actor_params, jax.vmap(self.actor_tx.init)(actor_params), critic_params,
                             self.critic_tx.init(critic_params), ValueNorm.create(), jnp.zeros((), jnp.int32))

    def policy_out(self, params, i, obs_i, h_i=None, start=None):
        """Agent i's policy output; recurrent: (output, new hidden state) from h_i, reset where start."""
        if self.recurrent:
            return self.actor.apply(params, obs_i, self.obs_mask[i], h_i, start)
        return self.actor.apply(params, obs_i, self.obs_mask[i])

    def carry(self, batch_shape) -> tuple:
        """The recurrent state of acting, (actor h [..., n, H], critic h [..., H], start [...]) of a
        fresh start; () without recurrence."""
        if not self.recurrent:
            return ()
        return (jnp.zeros((*batch_shape, self.n, self.hidden)), jnp.zeros((*batch_shape, self.hidden)),
                jnp.ones(batch_shape))

    def sample(self, actor_params, obs, avail, key, deterministic=False, h=None, start=None):
        """All agents. obs [..., n, O], avail [..., n, A] -> actions [..., n, A], logp [..., n],
        and the new actor hidden states [..., n, H] (recurrent; else None)."""
        keys = jax.random.split(key, self.n)
        acts, logps, hs = [], [], []
        for i in range(self.n):
            params = self.slots.get(actor_params, i)
            if self.recurrent:
                out, h_i = self.policy_out(params, i, obs[..., i, :], h[..., i, :], start)
                hs.append(h_i)
            else:
                out = self.policy_out(params, i, obs[..., i, :])
            a, lp = self.dist.sample(out, self.dim_mask[i], avail[..., i, :], keys[i], deterministic)
            acts.append(a)
            logps.append(lp)
        return jnp.stack(acts, -2), jnp.stack(logps, -1), jnp.stack(hs, -2) if hs else None

    def act(self, state: OnPolicyState, obs, action_mask, key, deterministic=False):
        """Feed-forward policies only (recurrent ones act through ``sample`` with their state)."""
        return self.sample(state.actor_params, obs, action_mask, key, deterministic)[0]

    def evaluation_carry(self, batch_shape):
        """(actor h, start) of a fresh start; () without recurrence."""
        carry = self.carry(batch_shape)
        return (carry[0], carry[2]) if carry else ()

    def evaluation_act(self, state: OnPolicyState, obs, action_mask, key, carry):
        """The deterministic policy: the Gaussian's mean, the most probable choice."""
        if not self.recurrent:
            return self.act(state, obs, action_mask, key, deterministic=True), carry
        h, start = carry
        actions, _, h = self.sample(state.actor_params, obs, action_mask, key, True, h, start)
        return actions, (h, jnp.zeros_like(start))

    def value(self, state: OnPolicyState, s, h=None, start=None):
        """The critic's raw output (normalised under value_norm), and its new hidden state
        (recurrent; else None)."""
        if self.recurrent:
            return self.critic.apply(state.critic_params, s, h, start)
        return self.critic.apply(state.critic_params, s), None

    # ------------------------------------------------------------------ chunks
    def chunks(self, x):
        """[T, E, ...] -> [C, L, ...]: runs of L = data_chunk_length consecutive steps of one env
        (L = 1, time-major, without recurrence)."""
        T, E, L = x.shape[0], x.shape[1], self.chunk_length
        x = jnp.moveaxis(x.reshape(T // L, L, E, *x.shape[2:]), 2, 1)
        return x.reshape(T // L * E, L, *x.shape[3:])

    def sequence(self, apply, h0, xs, start):
        """``apply(x, h, start) -> (y, h')`` along each chunk ([C, L, ...] inputs, h0 [C, H]),
        from the stored state: the training pass of a recurrent network."""
        def step(h, inp):
            x, s = inp
            y, h = apply(x, h, s)
            return h, y

        swap = lambda t: jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), t)  # noqa: E731
        return swap(jax.lax.scan(step, h0, (swap(xs), swap(start)))[1])

    def agent_outputs(self, params, i, d: AgentData):
        """Agent i's policy outputs [C, L, ...] on its chunks."""
        if not self.recurrent:
            return self.policy_out(params, i, d.obs)
        return self.sequence(lambda o, h, s: self.policy_out(params, i, o, h, s), d.h0, d.obs, d.start)

    def env_actions(self, actions):
        """Gaussian samples are unbounded; the env gets them clipped to [-1, 1]."""
        return jnp.argmax(actions, -1) if self.spec.discrete else jnp.clip(actions, -1.0, 1.0)

    def policy_probs(self, state: OnPolicyState, obs, action_mask):
        """Discrete agents' action probabilities [..., n, A] (for matrix-game checks)."""
        per_agent = self.slots.per_agent(state.actor_params)
        outs = jax.vmap(self.policy_out, in_axes=(0, 0, -2), out_axes=-2)(per_agent, jnp.arange(self.n), obs)
        m = self.dim_mask * action_mask
        return jnp.exp(jax.nn.log_softmax(jnp.where(m > 0, outs, -1e9), -1)) * m

    # ------------------------------------------------------------------ advantages
    def advantages(self, ts: OnPolicyState, ro: Rollout):
        """(normalised advantages [C, L], their std, returns [C, L]) of step 1 of the module docstring."""
        cfg = self.cfg
        def denorm(v):
            return ts.value_norm.values(v, cfg.value_norm)

        entropy_term = cfg.alpha * jnp.sum(ro.logp * ro.alive, -1)  # alpha sum_i log pi_i(a_i|o_i)
        adv_v = gae(ro.reward - entropy_term, denorm(ro.value), denorm(ro.next_value), ro.terminated, ro.truncated,
                    cfg.gamma, cfg.gae_lambda, cfg.truncation)
        returns = adv_v + denorm(ro.value)
        adv = adv_v + entropy_term
        std = jnp.ones(())
        if cfg.normalize_advantages:
            std = adv.std() + 1e-5
            adv = (adv - adv.mean()) / std
        return self.chunks(adv), std, self.chunks(returns)

    # ------------------------------------------------------------------ actors
    def agent_objective(self, params, i, d: AgentData, entropy_weight, surrogate):
        """-(E[surrogate(ratio, A) M] + entropy_weight H(pi_i)) over agent i's alive samples;
        aux: (policy loss, entropy)."""
        out = self.agent_outputs(params, i, d)
        logp = self.dist.log_prob(out, self.dim_mask[i], d.avail, d.action)
        ratio = jnp.exp(logp - d.old_logp)
        policy_loss = -masked_mean(d.factor * surrogate(ratio, d.adv), d.alive)
        entropy = masked_mean(self.dist.entropy(out, self.dim_mask[i], d.avail), d.alive)
        return policy_loss - entropy_weight * entropy, (policy_loss, entropy)

    def gradient_epochs(self, params, opt, i, d: AgentData, key, entropy_weight, surrogate, epochs: int):
        """``epochs`` epochs of ``actor_num_mini_batch`` Adam steps on agent_objective."""
        B = d.adv.shape[0]

        def epoch(carry, k):
            def step(carry, idx):
                params, opt = carry
                mb = jax.tree.map(lambda x: x[idx], d)
                (_, aux), g = jax.value_and_grad(self.agent_objective, has_aux=True)(params, i, mb, entropy_weight, surrogate)
                upd, opt = self.actor_tx.update(g, opt, params)
                return (optax.apply_updates(params, upd), opt), aux

            return jax.lax.scan(step, carry, minibatches(k, B, self.cfg.actor_num_mini_batch))

        (params, opt), (policy_loss, entropy) = jax.lax.scan(epoch, (params, opt), jax.random.split(key, epochs))
        return params, opt, {"policy_loss": policy_loss.mean(), "entropy": entropy.mean()}

    def agent_update(self, params, opt, i, d: AgentData, key, entropy_weight):
        """Agent i's step of the template: (params, opt, stats); by default ``actor_epochs`` of
        gradient steps on the ``surrogate`` (HATRPO replaces it with its trust-region step)."""
        return self.gradient_epochs(params, opt, i, d, key, entropy_weight, self.surrogate(), self.actor_epochs())

    def agent_data(self, ro: Rollout, i, adv, factor) -> AgentData:
        ch = self.chunks
        recurrent = dict(h0=ch(ro.actor_h[:, :, i])[:, 0], start=ch(ro.start)) if self.recurrent else {}
        # the samples agent i's losses average over: where it is alive, or all (use_policy_active_masks=false)
        alive = ch(ro.alive[:, :, i]) if self.cfg.use_policy_active_masks else jnp.ones(adv.shape)
        return AgentData(ch(ro.obs[:, :, i]), ch(ro.action_mask[:, :, i]), ch(ro.action[:, :, i]), ch(ro.logp[:, :, i]),
                         alive, adv, factor, **recurrent)

    def improve_actors(self, ts: OnPolicyState, ro: Rollout, adv, entropy_weight, key):
        """Step 2 of the module docstring. Returns (actor params, optimiser states, per-agent
        stats, trace) with the trace of the template (``perm`` and the ``factor`` M each position
        was weighted by) for tests."""
        cfg, slots = self.cfg, self.slots
        k_perm, key = jax.random.split(key)
        perm = order(k_perm, self.n, cfg.fixed_order)
        def agent_step(m, i, carry):
            actor_params, actor_opt, factor, key, stats, factors = carry
            key, k = jax.random.split(key)
            d = self.agent_data(ro, i, adv, factor)
            params, opt, s = self.agent_update(slots.get(actor_params, i), slots.get(actor_opt, i), i, d, k, entropy_weight)
            new_logp = self.dist.log_prob(self.agent_outputs(params, i, d), self.dim_mask[i], d.avail, d.action)
            s = {**s, "kl": masked_mean(d.old_logp - new_logp, d.alive)}  # sample estimate of KL(old || new)
            factors = factors.at[m].set(factor)
            if not self.simultaneous:
                # M <- M * pi_new(a_i) / pi_old(a_i); a dead agent's ratio is 1
                factor = jax.lax.stop_gradient(factor * jnp.where(d.alive > 0, jnp.exp(new_logp - d.old_logp), 1.0))
            stats = jax.tree.map(lambda acc, v: acc.at[i].set(v), stats, s)
            return slots.put(actor_params, i, params), slots.put(actor_opt, i, opt), factor, key, stats, factors

        stats0 = {k: jnp.zeros(self.n) for k in self.agent_stats()}
        carry = (ts.actor_params, ts.actor_opt, jnp.ones(adv.shape), key, stats0, jnp.zeros((self.n, *adv.shape)))
        actor_params, actor_opt, _, _, stats, factors = sequential(self.n, perm, agent_step, carry)
        return actor_params, actor_opt, stats, {"perm": perm, "factors": factors}

    def agent_stats(self) -> tuple[str, ...]:
        return ("policy_loss", "entropy", "kl")

    # ------------------------------------------------------------------ critic
    def critic_loss(self, params, s, old_value, target, h0, start):
        if self.recurrent:
            v = self.sequence(lambda x, h, st: self.critic.apply(params, x, h, st), h0, s, start)
        else:
            v = self.critic.apply(params, s)
        loss = regression_loss(target - v, self.cfg)
        if self.cfg.use_clipped_value_loss:
            clip = self.cfg.value_clip_param
            v_clipped = old_value + jnp.clip(v - old_value, -clip, clip)
            loss = jnp.maximum(loss, regression_loss(target - v_clipped, self.cfg))
        return loss.mean()

    def fit_critic(self, ts: OnPolicyState, ro: Rollout, target, key):
        """``critic_epoch`` epochs of minibatch steps onto ``target`` (the returns, normalised
        under value_norm)."""
        cfg = self.cfg
        s, old_value = self.chunks(ro.state), self.chunks(ro.value)
        h0, start = (self.chunks(ro.critic_h)[:, 0], self.chunks(ro.start)) if self.recurrent else (None, None)

        def epoch(carry, k):
            def step(carry, idx):
                params, opt = carry
                take = lambda x: None if x is None else x[idx]  # noqa: E731
                loss, g = jax.value_and_grad(self.critic_loss)(params, s[idx], old_value[idx], target[idx], take(h0),
                                                               take(start))
                upd, opt = self.critic_tx.update(g, opt, params)
                return (optax.apply_updates(params, upd), opt), loss

            return jax.lax.scan(step, carry, minibatches(k, target.shape[0], cfg.critic_num_mini_batch))

        (params, opt), losses = jax.lax.scan(epoch, (ts.critic_params, ts.critic_opt), jax.random.split(key, cfg.critic_epoch))
        return params, opt, losses.mean()

    # ------------------------------------------------------------------ update
    def update(self, ts: OnPolicyState, ro: Rollout, key):
        cfg = self.cfg
        k_actor, k_critic = jax.random.split(key)
        adv, std, returns = self.advantages(ts, ro)
        entropy_weight = cfg.entropy_coef + cfg.alpha / std
        actor_params, actor_opt, stats, _ = self.improve_actors(ts, ro, adv, entropy_weight, k_actor)
        value_norm, target = ts.value_norm.targets(returns, cfg.value_norm)
        critic_params, critic_opt, value_loss = self.fit_critic(ts, ro, target, k_critic)
        new = OnPolicyState(actor_params, actor_opt, critic_params, critic_opt, value_norm, ts.updates + 1)
        return new, {"value_loss": value_loss, **stats}


def ratio_surrogate(ratio, adv):
    """HAA2C (and HATRPO's objective): the importance-weighted advantage."""
    return ratio * adv


def clipped_surrogate(clip: float):
    """HAPPO / MAPPO: min(r A, clip(r, 1 - eps, 1 + eps) A)."""
    return lambda ratio, adv: jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - clip, 1.0 + clip) * adv)
