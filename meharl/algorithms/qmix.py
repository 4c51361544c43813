"""QMIX (Rashid et al., ICML 2018) and VDN (Sunehag et al., AAMAS 2018): recurrent agent
Q-networks whose joint value is a mixer of the chosen actions' values (``mixers.py``),
trained end to end on the TD(lambda) target of the joint value (``value.py``):

    L = mean_{b,t} (Q_tot(s_t, Q_1(tau_1, a_1), ..., Q_n(tau_n, a_n)) - G_t)^2

with G_t from the target networks' Q'_tot(s_{t+1}, Q'_i(tau'_i, a*_i)), a*_i the online
network's greedy next action (double_q) or the target's own. The loss is the squared TD error
averaged over the batch's steps, as pymarl (no 1/2).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from meharl.algorithms.mixers import QMixer
from meharl.algorithms.value import RecurrentAgents, Sequence, ValueConfig, greedy, td_lambda_targets
from meharl.config import key


@dataclass(frozen=True)
class VDNConfig(ValueConfig):
    double_q: bool = key(True, "bootstrap at the online network's greedy next actions (double Q-learning)")


@dataclass(frozen=True)
class MixerConfig:
    """The keys of QMIX's mixing network (pymarl's qmix.yaml)."""

    mixing_embed_dim: int = key(32, "width of the mixing network's hidden layer", "positive")
    hypernet_layers: int = key(2, "layers of the hypernetworks of the mixing weights (1 or 2)", "positive")
    hypernet_embed: int = key(64, "hidden width of two-layer hypernetworks", "positive")

    def check_mixer(self):
        if self.hypernet_layers not in (1, 2):
            raise ValueError(f"invalid hypernet_layers={self.hypernet_layers}: 1 or 2")


@dataclass(frozen=True)
class QMIXConfig(VDNConfig, MixerConfig):
    def validate(self):
        super().validate()
        self.check_mixer()


class VDN(RecurrentAgents):
    Config = VDNConfig
    metrics = ("loss", "q_taken_mean", "target_mean")
    description = "Value-Decomposition Networks (Sunehag et al., AAMAS 2018): Q_tot = sum_i Q_i"

    def mix(self, mixer_params, q, state):
        """Q_tot [...] of the agents' values q [..., n] in state [..., S]."""
        return q.sum(-1)

    def loss(self, params, target, seq: Sequence, key, env_steps):
        cfg = self.cfg
        q, q_next, _ = self.unroll(params["agent"], seq)
        _, q_next_target, _ = self.unroll(target["agent"], seq)
        q_taken = jnp.take_along_axis(q, seq.action[..., None], -1)[..., 0]
        chooser = jax.lax.stop_gradient(q_next) if cfg.double_q else q_next_target
        a_next = greedy(chooser, seq.next_avail * self.dim_mask)
        v_next = jnp.take_along_axis(q_next_target, a_next[..., None], -1)[..., 0]
        g = td_lambda_targets(seq.reward, seq.terminated, seq.done,
                              self.mix(target["mixer"], v_next, seq.next_state), cfg.gamma, cfg.td_lambda)
        g = jax.lax.stop_gradient(g)
        q_tot = self.mix(params["mixer"], q_taken, seq.state)
        loss = jnp.mean(jnp.square(q_tot - g))
        return loss, {"loss": loss, "q_taken_mean": q_tot.mean(), "target_mean": g.mean()}


class QMIX(VDN):
    Config = QMIXConfig
    description = "QMIX (Rashid et al., ICML 2018): a monotonic hypernetwork mixer of recurrent agent Q-values"

    def __init__(self, spec, cfg, total_updates: int = 1):
        super().__init__(spec, cfg, total_updates)
        self.mixer = QMixer(cfg.mixing_embed_dim, cfg.hypernet_layers, cfg.hypernet_embed)

    def init_mixer(self, key):
        return self.mixer.init(key, jnp.zeros((self.n,)), jnp.zeros((self.spec.state_dim,)))

    def mix(self, mixer_params, q, state):
        return self.mixer.apply(mixer_params, q, state)
