"""Soft-QMIX (Chen et al. 2024, "Soft-QMIX: Integrating Maximum Entropy for Monotonic Value
Function Factorization"; Section 4.3, Appendices A, D, G, Algorithm 1).

Networks: the stage-1 agent network Q^loc_i(tau_i, .) (``value.py``); per agent an
order-preserving g_i (``mixers.MonotoneTransform``) giving Q_i = g_i(Q^loc_i, s); the QMIX
mixer Q_tot = Mixer(Q_1(u_1), ..., Q_n(u_n), s); an order-preserving f_i
(``mixers.AffineTransform``). The training policy is Eq. 15,

    pi_i(u | o_i, s) = softmax_u( f_i(g_i(Q^loc_i(tau_i, .), s), s) / alpha ),

and execution is the argmax of the stage-1 network alone (g_i, f_i keep the order).

One update (Algorithm 1):

    L_Q  = 1/2 (Q_tot(s_t, u_t) - G_t)^2                                      (Eq. 13)
    L_pi = 1/2 (sum_i f_i(Q_i(u_i), s_t) - Q_tot(s_t, u_t))^2, gradient stopped at Q_i and Q_tot (Eq. 14)

G_t is the soft TD(lambda) return (Eq. 24, Appendix D): the soft value of the next state,
V'_tot = Q'_tot(s', u') - alpha sum_i log pi_i(u'_i), with u' ~ pi (one sample) and the target
networks, where the return is bootstrapped; where it goes on, G_{t+1} - alpha sum_i log pi_i of
the next step's taken action (``soft_target_action=taken``).

The authors' code differs (docs/algorithms/value-based.md), each difference an option here:
its mixer output is the plain sum of the g_i outputs (``mixer=sum``), alpha is 0.03, targets
are hard copies every 200 episodes (``tau=1``, ``target_update_interval``), its TD(lambda)
entropy term is the sampled action's on both branches (``soft_target_action=sampled``), and
samples where the two losses' errors agree in sign get half weight in L_Q (``gopt_weight=0.5``).
"""
from __future__ import annotations

from dataclasses import dataclass
import jax
import jax.numpy as jnp

from meharl.algorithms.mixers import AffineTransform, MonotoneTransform, QMixer
from meharl.algorithms.qmix import MixerConfig
from meharl.algorithms.value import RecurrentAgents, Sequence, ValueConfig, td_lambda_targets
from meharl.config import key
from meharl.networks import MASKED_LOGIT

MIXERS = ("qmix", "sum")
TARGET_ACTIONS = ("taken", "sampled")


@dataclass(frozen=True)
class SoftQMIXConfig(ValueConfig, MixerConfig):
    # Soft-QMIX Table 8 (its QMIX) and Table 9; pymarl2's qmix.yaml for what they do not state
    n_envs: int = key(4, "parallel envs, each storing one sequence per block (the paper's batch_size_run)", "positive")
    optimizer: str = key("adam", "optimiser", choices=("rmsprop", "adam", "radam"))
    lr: float = key(1e-3, "learning rate", "positive")
    batch_size: int = key(128, "sequences per update", "positive")
    td_lambda: float = key(0.4, "lambda of the soft TD(lambda) return (Table 8)", "prob")
    epsilon_start: float = key(0.0, "the first epsilon: the probability of a uniformly random action instead of "
                               "the softmax policy's (the paper: none)", "prob")
    epsilon_finish: float = key(0.0, "the last epsilon", "prob")
    target_update_interval: int = key(1, "updates between two target-network updates", "positive")
    tau: float = key(0.005, "Polyak rate of the targets (Algorithm 1; its value is not stated); the code: tau=1 "
                     "every 50 updates", "unit")
    alpha: float = key(0.03, "temperature of the training policy and the soft target (Table 9, 5v5)", "positive")
    mixer: str = key("qmix", "the mixer of the Q_i: QMIX's (the paper) or their sum (the authors' code)", choices=MIXERS)
    transform_embed: int = key(32, "hidden units of each g_i (Table 5; the code: 16)", "positive")
    soft_target_action: str = key("taken", "the -alpha log pi term where the return goes on: of the next taken "
                                  "action (App. D) or of the sampled one (the code)", choices=TARGET_ACTIONS)
    gopt_weight: float = key(1.0, "L_Q weight of the samples where the errors of L_Q and L_pi agree (the code: 0.5)",
                             "positive")

    def validate(self):
        super().validate()
        self.check_mixer()


class SoftQMIX(RecurrentAgents):
    Config = SoftQMIXConfig
    metrics = ("loss", "policy_loss", "q_taken_mean", "target_mean", "entropy")
    description = "Soft-QMIX (Chen et al. 2024): MaxEnt QMIX with order-preserving transforms"

    def __init__(self, spec, cfg, total_updates: int = 1):
        super().__init__(spec, cfg, total_updates)
        self.mixer = QMixer(cfg.mixing_embed_dim, cfg.hypernet_layers, cfg.hypernet_embed)
        self.g = MonotoneTransform(cfg.transform_embed, cfg.hypernet_embed)
        self.f = AffineTransform(cfg.hypernet_embed)

    def init_mixer(self, key):
        k_mix, k_g, k_f = jax.random.split(key, 3)
        q, s = jnp.zeros((self.n, self.n_actions)), jnp.zeros((self.spec.state_dim,))
        return {"mix": self.mixer.init(k_mix, q[:, 0], s), "g": self.g.init(k_g, q, s), "f": self.f.init(k_f, q, s)}

    def mix(self, params, q, state):
        return q.sum(-1) if self.cfg.mixer == "sum" else self.mixer.apply(params["mix"], q, state)

    def logits(self, params, q_loc, state, avail):
        """f_i(g_i(Q^loc_i, s), s) / alpha over the available actions [..., n, A] (Eq. 15)."""
        z = self.f.apply(params["f"], self.g.apply(params["g"], q_loc, state), state) / self.cfg.alpha
        return jnp.where(avail * self.dim_mask > 0, z, MASKED_LOGIT)

    def policy(self, params, q, avail, global_state, key):
        """A sample of Eq. 15's policy."""
        return jax.random.categorical(key, self.logits(params["mixer"], q, global_state, avail))

    def loss(self, params, target, seq: Sequence, key, env_steps):
        cfg, mixer = self.cfg, params["mixer"]
        q_loc, q_loc_next, _ = self.unroll(params["agent"], seq)
        _, q_loc_next_target, _ = self.unroll(target["agent"], seq)
        sg = jax.lax.stop_gradient
        # the soft value of the next state: one joint action u' ~ pi (online policy), target networks
        logp_next = jax.nn.log_softmax(sg(self.logits(mixer, q_loc_next, seq.next_state, seq.next_avail)), -1)
        u_next = jax.random.categorical(key, logp_next)
        logp_u_next = jnp.take_along_axis(logp_next, u_next[..., None], -1)[..., 0].sum(-1)  # [B, T]
        q_next = self.g.apply(target["mixer"]["g"], q_loc_next_target, seq.next_state)
        q_next = jnp.take_along_axis(q_next, u_next[..., None], -1)[..., 0]
        v_next = self.mix(target["mixer"], q_next, seq.next_state) - cfg.alpha * logp_u_next
        # where the return goes on: -alpha log pi of step t+1's action (taken, or the sampled u')
        if cfg.soft_target_action == "taken":
            logp = jax.nn.log_softmax(sg(self.logits(mixer, q_loc, seq.state, seq.avail)), -1)
            logp_taken = jnp.take_along_axis(logp, seq.action[..., None], -1)[..., 0].sum(-1)
            bonus = -cfg.alpha * jnp.concatenate([logp_taken[:, 1:], jnp.zeros_like(logp_taken[:, :1])], 1)
        else:
            bonus = -cfg.alpha * logp_u_next
        g_t = sg(td_lambda_targets(seq.reward, seq.terminated, seq.done, v_next, cfg.gamma, cfg.td_lambda, bonus))
        # L_Q (Eq. 13) on Q_i = g_i(Q^loc_i(u_i)) of the taken actions
        q_taken = jnp.take_along_axis(q_loc, seq.action[..., None], -1)  # [B, T, n, 1]
        q_i = self.g.apply(mixer["g"], q_taken, seq.state)
        q_tot = self.mix(mixer, q_i[..., 0], seq.state)
        td = q_tot - g_t
        # L_pi (Eq. 14): only f learns; Q_i and Q_tot are fixed
        approx = sg(q_tot) - self.f.apply(mixer["f"], sg(q_i), seq.state)[..., 0].sum(-1)
        agree = ((approx > 0).astype(jnp.float32) + (td < 0).astype(jnp.float32)) != 1
        w = jnp.where(agree, cfg.gopt_weight, 1.0)
        loss_q = jnp.sum(0.5 * jnp.square(td) * w) / jnp.sum(w)
        loss_pi = jnp.mean(0.5 * jnp.square(approx))
        entropy = -jnp.sum(jnp.exp(logp_next) * jnp.where(logp_next > MASKED_LOGIT / 2, logp_next, 0.0), -1).mean()
        return loss_q + loss_pi, {"loss": loss_q, "policy_loss": loss_pi, "q_taken_mean": q_tot.mean(),
                                  "target_mean": g_t.mean(), "entropy": entropy}

