"""ADER (Kim & Sung, ICML 2023, "An Adaptive Entropy-Regularization Framework for Multi-Agent
Reinforcement Learning"; Eqs. 8-10, Appendix B) for discrete agents: a MaxEnt actor-critic with
the return and every agent's entropy in separate critics, one temperature per agent, and
per-agent target entropies moved towards the agents whose exploration the team needs.

Networks: recurrent actors pi_i(. | tau_i) (the agent network of ``value.py`` giving logits);
the reward critics Q^R_i(o_i, .) and entropy critics Q^H_i(o_i, .) (per-agent MLPs on the
observation and agent id, shared by the agents, ``RecurrentAgents.local_q``); a monotone
mixer (QMIX's) of each: Q^R_JT = f_R(s, Q^R_1(u_1), ..., Q^R_N(u_N)) and, one output per
agent, Q^{H,i}_JT = f_H(s, Q^H_1(u_1), ...)_i. The same mixers give the state values
(Eqs. B.4-B.5, the expectations exact over the categorical policies, discrete SAC):

    V^R_JT(s)     = f_R(s, V^R_1, ..., V^R_N),                  V^R_i = sum_u pi_i(u) Q^R_i(u)
    V^{H,i}_JT(s) = f_H(s, V^H_1, ..., V^H_N)_i + alpha_i H(pi_i)

One update (Algorithm 1), all from one batch of sequences:

    actors   L(phi)  = -E[V^R_JT(s) + sum_i alpha_i (f_H(s, V^H)_i + H(pi_i))]         (B.1)
    critics  L(th_R) = 1/2 (Q^R_JT(s, u) - (r + gamma V^R_JT'(s')))^2                     (B.2)
             L(th_H) = sum_i 1/2 (Q^{H,i}_JT(s, u) - gamma V^{H,i}_JT'(s'))^2             (B.3)
    temperatures  L(alpha_i) = E[alpha_i (H(pi_i) - H_i)], on log alpha_i                  (B.6)
    target entropies  beta = softmax(-sign(H_0) c / (max_j c_j T)),
                      c_i = E[dV^R_JT / dV^R_i] over the batch                             (B.7)
                      beta^EMA <- (1 - xi) beta^EMA + xi beta,  H_i = beta^EMA_i H_0       (B.8)

A large c_i (agent i's value moves the team's) lowers H_i: that agent exploits, the others
explore. H_0 = N log|A| k_ratio (Appendix C). The primed values are the target networks'
(Polyak averages), TD(lambda) with ``td_lambda`` > 0 (the entropy return's intermediate steps
keep their alpha_i H(pi_i)).

Where the authors' code (wjkim1202/ader, incomplete) differs, as options: twin critics and
mixers with the smaller value (``twin_critics``), TD(lambda = 0.8) (``td_lambda``), hard target
copies every 200 episodes (``tau=1``, ``target_update_interval``), the EMA's weight 0.9 on the
old value (``ader_xi=0.1``), the metric scaled to a largest value of 10 (``ader_temperature=0.1``).
Not reproduced: its metric dV_JT/dH_i by finite differences (the ICML version's; ``algo=hasac
ader=true`` uses that metric on continuous tasks), its per-sample softmax, its epsilon floor inside
the policies of the losses, its separate optimisers (actor lr 0.0025) and alpha clamp
(docs/algorithms/ader.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from meharl.algorithms.mixers import QMixer
from meharl.algorithms.qmix import MixerConfig
from meharl.algorithms.value import RecurrentAgents, Sequence, ValueConfig, td_lambda_targets
from meharl.config import key
from meharl.networks import MASKED_LOGIT, MLP, masked_log_softmax


def ader_weights(beta_ema, explore, total_entropy: float, xi: float, temperature: float):
    """B.7-B.8: beta = softmax(sign(H_0) e / (max_j |e_j| T)) of ``explore`` e [n] (how much
    each agent's exploration is wanted: -dV_JT/dV_i in the paper, dV/dH_i in its ICML version),
    then beta^EMA <- (1 - xi) beta^EMA + xi beta. For H_0 < 0 a larger beta_i is a more negative
    H_i, so the sign flips (Appendix B)."""
    sign = 1.0 if total_entropy >= 0 else -1.0
    beta = jax.nn.softmax(sign * explore / (jnp.abs(explore).max() + 1e-8) / temperature)
    return (1.0 - xi) * beta_ema + xi * beta


@dataclass(frozen=True)
class ADERConfig(ValueConfig, MixerConfig):
    # Appendix C (SMAC, 3m) where it says; pymarl's default.yaml beneath (the code's base)
    critic_hidden_sizes: tuple[int, ...] = key((64, 64), "hidden widths of the per-agent critics (App. C: 2 x 64)",
                                               "positive")
    twin_critics: bool = key(False, "two reward and two entropy critics, each mixed, the smaller value used (the "
                             "authors' code; the paper: one)")
    target_update_interval: int = key(1, "updates between two target-network updates", "positive")
    tau: float = key(0.005, "Polyak rate of the targets (the paper: an EMA, rate not stated); the code: tau=1 "
                     "every 200 updates", "unit")
    alpha_init: float = key(math.exp(-2), "every agent's initial temperature (App. C, 3m: e^-2)", "positive")
    k_ratio: float = key(0.1, "H_0 = N log|A| k_ratio, the sum of the target entropies (App. C, 3m: 0.1)", "positive")
    ader_xi: float = key(0.9, "EMA weight of the new beta (Eq. B.8; the authors' code gives it 0.1)", "unit")
    ader_temperature: float = key(1.0, "softmax temperature of Eq. B.7 over the metric divided by its largest "
                                  "value (the authors' code: 0.1)", "positive")

    def validate(self):
        super().validate()
        self.check_mixer()


class ADER(RecurrentAgents):
    Config = ADERConfig
    description = "ADER (Kim & Sung, ICML 2023): MaxEnt actor-critic with adaptive per-agent target entropies"
    metrics = ("loss", "policy_loss", "q_taken_mean", "entropy", "alpha", "target_entropy")
    per_agent_metrics = ("entropy", "alpha", "target_entropy")

    def __init__(self, spec, cfg, total_updates: int = 1):
        super().__init__(spec, cfg, total_updates)
        self.critic = MLP(cfg.critic_hidden_sizes, self.n_actions, 1.0)
        self.mix_r = QMixer(cfg.mixing_embed_dim, cfg.hypernet_layers, cfg.hypernet_embed)
        self.mix_h = QMixer(cfg.mixing_embed_dim, cfg.hypernet_layers, cfg.hypernet_embed, n_out=self.n)
        self.k = 2 if cfg.twin_critics else 1
        self.total_entropy = self.n * math.log(self.n_actions) * cfg.k_ratio  # H_0

    def init_mixer(self, key):
        k = jax.random.split(key, 4)
        s, zero = jnp.zeros((self.spec.state_dim,)), jnp.zeros((self.n,))
        mixers = lambda mixer, kk: jax.vmap(lambda x: mixer.init(x, zero, s))(jax.random.split(kk, self.k))  # noqa: E731
        return {"reward": self.init_local_q(self.critic, k[0], self.k), "entropy": self.init_local_q(self.critic, k[1], self.k),
                "mix_r": mixers(self.mix_r, k[2]), "mix_h": mixers(self.mix_h, k[3]),
                "log_alpha": jnp.full((self.n,), math.log(self.cfg.alpha_init)),
                # beta^EMA lives with the parameters (its gradient is zero: only update() writes it)
                "beta": jnp.full((self.n,), 1.0 / self.n)}

    def policy(self, params, logits, avail, global_state, key):
        """A sample of the actors' policies."""
        return jax.random.categorical(key, jnp.where(avail > 0, logits, MASKED_LOGIT))

    def values(self, m, obs, state, pi):
        """V^R_JT [K, ...] and f_H(s, V^H)_i [K, ..., n] of the critics and mixers ``m`` under the
        policies ``pi`` [..., n, A], and the local V^R_i [K, ..., n]."""
        v_r = jnp.sum(pi * self.local_q(self.critic, m["reward"], obs), -1)
        v_h = jnp.sum(pi * self.local_q(self.critic, m["entropy"], obs), -1)
        return (jax.vmap(self.mix_r.apply, (0, 0, None))(m["mix_r"], v_r, state),
                jax.vmap(self.mix_h.apply, (0, 0, None))(m["mix_h"], v_h, state), v_r)

    def loss(self, params, target, seq: Sequence, key, env_steps):
        cfg, sg, m = self.cfg, jax.lax.stop_gradient, params["mixer"]
        alpha = jnp.exp(m["log_alpha"])  # [n]
        avail, next_avail = seq.avail * self.dim_mask, seq.next_avail * self.dim_mask
        logits, logits_next, _ = self.unroll(params["agent"], seq)
        logp = masked_log_softmax(logits, avail)
        pi = jnp.exp(logp)
        entropy = -jnp.where(avail > 0, pi * logp, 0.0).sum(-1)  # H(pi_i) [B, T, n]
        logp_next = sg(masked_log_softmax(logits_next, next_avail))
        pi_next = jnp.exp(logp_next)
        entropy_next = -jnp.where(next_avail > 0, pi_next * logp_next, 0.0).sum(-1)

        # critics (B.2, B.3): the mixed values of the taken actions against the targets' V(s')
        def taken(q):
            return jnp.take_along_axis(q, seq.action[None, ..., None], -1)[..., 0]
        q_r = jax.vmap(self.mix_r.apply, (0, 0, None))(m["mix_r"], taken(self.local_q(self.critic, m["reward"], seq.obs)),
                                                        seq.state)  # [K, B, T]
        q_h = jax.vmap(self.mix_h.apply, (0, 0, None))(m["mix_h"], taken(self.local_q(self.critic, m["entropy"], seq.obs)),
                                                        seq.state)  # [K, B, T, n]
        v_r_next, v_h_next, _ = self.values(target["mixer"], seq.next_obs, seq.next_state, pi_next)
        bonus = sg(alpha) * entropy_next  # alpha_i H(pi_i) of the next state (B.5)
        y_r = td_lambda_targets(seq.reward, seq.terminated, seq.done, v_r_next.min(0), cfg.gamma, cfg.td_lambda)
        per_agent = lambda a: jnp.moveaxis(a, -1, 0)  # noqa: E731  [B, T, n] -> [n, B, T]
        y_h = td_lambda_targets(jnp.zeros_like(per_agent(bonus)), seq.terminated, seq.done,
                                per_agent(v_h_next.min(0) + bonus), cfg.gamma, cfg.td_lambda, per_agent(bonus))
        y_r, y_h = sg(y_r), sg(jnp.moveaxis(y_h, 0, -1))
        loss_q = (0.5 * jnp.square(q_r - y_r).mean((1, 2)).sum()
                  + 0.5 * jnp.square(q_h - y_h).mean((1, 2)).sum())

        # actors (B.1): the exact expectation over each policy, critics and mixers fixed
        v_r, v_h, v_local = self.values(sg(m), seq.obs, seq.state, pi)
        objective = v_r.min(0) + jnp.sum(sg(alpha) * (v_h.min(0) + entropy), -1)
        loss_pi = -objective.mean()

        # temperatures (B.6) on the alive agents, against the current target entropies
        h_target = m["beta"] * self.total_entropy
        alive = seq.alive
        loss_alpha = jnp.sum(m["log_alpha"] * sg(entropy - h_target) * alive) / jnp.maximum(alive.sum(), 1.0)

        # B.7: c_i = E[dV^R_JT / dV^R_i] at the current values, through the (first) mixer
        grad_v = jax.grad(lambda v: self.mix_r.apply(jax.tree.map(lambda p: p[0], sg(m["mix_r"])), v, seq.state).sum())(
            sg(v_local[0]))
        c = grad_v.mean((0, 1))

        metrics = {"loss": loss_q, "policy_loss": loss_pi, "q_taken_mean": q_r.mean(), "alpha": alpha,
                   "entropy": jnp.sum(entropy * alive, (0, 1)) / jnp.maximum(alive.sum((0, 1)), 1.0), "explore": -c,
                   "target_entropy": h_target}
        return loss_pi + loss_q + loss_alpha, metrics

    def update(self, state, seq: Sequence, key, env_steps):
        """The gradient step, then B.7-B.8 on the metric the loss computed."""
        state, metrics = super().update(state, seq, key, env_steps)
        m, cfg = state.params["mixer"], self.cfg
        beta = ader_weights(m["beta"], metrics.pop("explore"), self.total_entropy, cfg.ader_xi, cfg.ader_temperature)
        return state._replace(params={**state.params, "mixer": {**m, "beta": beta}}), metrics
