"""FOP (Zhang et al., ICML 2021, "FOP: Factorizing Optimal Joint Policy of Maximum-Entropy
Multi-Agent Reinforcement Learning"), the MaxEnt value-factorisation baseline of the Soft-QMIX
and ADER papers, as the authors' code (liyheng/FOP ``learners/fop_learner.py``) computes it.

Networks: recurrent actors pi_i(. | tau_i) (the agent network of ``value.py`` giving logits);
two per-agent soft Q critics Q^k_i(o_i, .) (an MLP on observation and agent id, shared by the
agents), each with its own FOP mixer (``mixers.FOPMixer``: Q_tot = sum_i lambda_i (Q_i - V_i) +
sum_i V_i + V(s), lambda_i > 0, V_i = alpha logsumexp(Q_i / alpha) over the available actions).
The temperature is annealed: alpha_t = max(alpha_finish, alpha_start - t (alpha_start -
alpha_finish) / alpha_anneal_steps) (the code: max(0.05, 0.5 - t / 200k)).

One update, actors then critics:

    actors   L_pi = mean_{b,t,i} sum_u pi_i(u) (alpha log pi_i(u) - min_k Q^k_i(o_i, u))   (discrete SAC)
    critics  L_k  = mean_{b,t} (Q^k_tot(s_t, u_t) - y_t)^2,
             y_t  = G_t - alpha mean_i log pi_i(u'_i | tau'_i),  u' ~ pi at the next step,
             G_t  the TD(lambda) return on min_k Q'^k_tot(s', u') of the target critics and mixers

Differences from the code (docs/algorithms/value-based.md): V_i and pi_i are over the available
actions only (the code: all actions for V_i, 1e-10 for unavailable ones in pi); the losses use pi
itself (the code mixes epsilon's uniform floor into pi in the learner too); one optimiser for
actors and critics with one gradient clipping (the code: two, each clipped).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from meharl.algorithms.mixers import FOPMixer
from meharl.algorithms.value import RecurrentAgents, Sequence, ValueConfig, td_lambda_targets
from meharl.config import key
from meharl.networks import MASKED_LOGIT, MLP, masked_log_softmax


@dataclass(frozen=True)
class FOPConfig(ValueConfig):
    # the code's fop.yaml (pymarl's default.yaml beneath)
    td_lambda: float = key(0.8, "lambda of the TD(lambda) return (the code's fop.yaml; Soft-QMIX Table 10: 0.4)", "prob")
    critic_hidden_sizes: tuple[int, ...] = key((64, 64), "hidden widths of the per-agent soft Q critics", "positive")
    n_heads: int = key(4, "attention heads of the mixer's weights lambda_i", "positive")
    mixing_embed_dim: int = key(32, "hidden width of the mixer's V(s)", "positive")
    alpha_start: float = key(0.5, "the temperature at the start", "positive")
    alpha_finish: float = key(0.05, "the temperature after the annealing", "positive")
    alpha_anneal_steps: int = key(90_000, "env steps of the linear temperature schedule (0.5 - t / 200k in the "
                                  "code reaches 0.05 at 90k)", "positive")


class FOP(RecurrentAgents):
    Config = FOPConfig
    metrics = ("loss", "policy_loss", "q_taken_mean", "target_mean", "entropy", "alpha")
    description = "FOP (Zhang et al., ICML 2021): IGO-factorised MaxEnt actor-critic with an attention mixer"

    def __init__(self, spec, cfg, total_updates: int = 1):
        super().__init__(spec, cfg, total_updates)
        self.critic = MLP(cfg.critic_hidden_sizes, self.n_actions, 1.0)
        self.mixer = FOPMixer(cfg.n_heads, cfg.mixing_embed_dim)

    def init_mixer(self, key):
        k_critic, k_mix = jax.random.split(key)
        s, zero = jnp.zeros((self.spec.state_dim,)), jnp.zeros((self.n,))
        return {"critic": self.init_local_q(self.critic, k_critic, 2),
                "mix": jax.vmap(lambda k: self.mixer.init(k, zero, zero, s, jnp.zeros((self.n, self.n_actions))))(
                    jax.random.split(k_mix, 2))}

    def alpha(self, env_steps):
        cfg = self.cfg
        return jnp.maximum(cfg.alpha_finish,
                           cfg.alpha_start - env_steps * (cfg.alpha_start - cfg.alpha_finish) / cfg.alpha_anneal_steps)

    def policy(self, params, logits, avail, global_state, key):
        """A sample of the actors' policies."""
        return jax.random.categorical(key, jnp.where(avail > 0, logits, MASKED_LOGIT))

    def soft_v(self, q, avail, alpha):
        """V_i = alpha logsumexp(Q_i / alpha) over the available actions."""
        return alpha * jax.nn.logsumexp(jnp.where(avail > 0, q / alpha, MASKED_LOGIT), -1)

    def q_tot(self, mix_params, q, avail, alpha, state, action):
        """Both mixers' Q^k_tot at the joint action ``action`` [..., n]: [2, ...]."""
        onehot = jax.nn.one_hot(action, self.n_actions)
        q_taken = jnp.take_along_axis(q, action[None, ..., None], -1)[..., 0]
        v = self.soft_v(q, avail, alpha)
        return jax.vmap(lambda p, qk, vk: self.mixer.apply(p, qk, vk, state, onehot))(mix_params, q_taken, v)

    def loss(self, params, target, seq: Sequence, key, env_steps):
        cfg, sg = self.cfg, jax.lax.stop_gradient
        alpha = self.alpha(env_steps)
        avail, next_avail = seq.avail * self.dim_mask, seq.next_avail * self.dim_mask
        logits, logits_next, _ = self.unroll(params["agent"], seq)
        logp = masked_log_softmax(logits, avail)
        pi = jnp.exp(logp)
        # actors: discrete SAC against the smaller of the two critics
        q = self.local_q(self.critic, params["mixer"]["critic"], seq.obs)  # [2, B, T, n, A]
        q_min = sg(q.min(0))
        plogp = jnp.where(avail > 0, pi * (alpha * logp - q_min), 0.0)
        loss_pi = plogp.sum(-1).mean()
        # critics: y = TD(lambda) on the target networks' min_k Q'_tot(s', u') - alpha mean_i log pi_i(u')
        logp_next = sg(masked_log_softmax(logits_next, next_avail))
        u_next = jax.random.categorical(key, logp_next)
        q_next = self.local_q(self.critic, target["mixer"]["critic"], seq.next_obs)
        v_next = self.q_tot(target["mixer"]["mix"], q_next, next_avail, alpha, seq.next_state, u_next).min(0)
        g_t = td_lambda_targets(seq.reward, seq.terminated, seq.done, v_next, cfg.gamma, cfg.td_lambda)
        logp_u_next = jnp.take_along_axis(logp_next, u_next[..., None], -1)[..., 0].mean(-1)
        y = sg(g_t - alpha * logp_u_next)
        q_tot = self.q_tot(params["mixer"]["mix"], q, avail, alpha, seq.state, seq.action)  # [2, B, T]
        loss_q = jnp.square(q_tot - y).mean(-1).mean(-1).sum()
        entropy = -jnp.where(avail > 0, pi * logp, 0.0).sum(-1).mean()
        return loss_pi + loss_q, {"loss": loss_q, "policy_loss": loss_pi, "q_taken_mean": q_tot.mean(),
                                  "target_mean": y.mean(), "entropy": entropy, "alpha": alpha}
