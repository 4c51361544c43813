"""Mixers: the joint value of the agents' values given the global state.

    VDN   Q_tot = sum_i Q_i                                        (Sunehag et al. 2018)
    QMIX  Q_tot = w_2(s)^T elu(W_1(s)^T q + b_1(s)) + V(s),  W_1, w_2 >= 0   (Rashid et al. 2018)

QMIX's weights come from hypernetworks of the state made non-negative by an absolute value,
so Q_tot is monotone in every Q_i (pymarl's QMixer: ``hypernet_layers`` 1 is a linear
hypernetwork, 2 a ReLU hidden layer of ``hypernet_embed`` units; V(s) has a ReLU hidden layer
of ``mixing_embed_dim``).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from meharl.networks import _dense


def hypernet(out: int, layers: int, embed: int):
    """A Dense (layers 1) or Dense-ReLU-Dense (layers 2) hypernetwork of the state."""
    if layers == 1:
        return _dense(out)
    return nn.Sequential([_dense(embed), nn.relu, _dense(out)])


class QMixer(nn.Module):
    embed: int = 32
    hypernet_layers: int = 2
    hypernet_embed: int = 64
    n_out: int = 1  # joint values out, each monotone in every q (ADER's entropy mixer: one per agent)

    @nn.compact
    def __call__(self, q, state):
        """q [..., n], state [..., S] -> Q_tot [...] ([..., n_out] when n_out > 1)."""
        n, lead = q.shape[-1], state.shape[:-1]
        w1 = jnp.abs(hypernet(self.embed * n, self.hypernet_layers, self.hypernet_embed)(state))
        w1 = w1.reshape(lead + (n, self.embed))
        b1 = _dense(self.embed)(state)
        w2 = jnp.abs(hypernet(self.embed * self.n_out, self.hypernet_layers, self.hypernet_embed)(state))
        v = nn.Sequential([_dense(self.embed), nn.relu, _dense(self.n_out)])(state)
        hidden = nn.elu(jnp.einsum("...n,...ne->...e", q, w1) + b1)
        out = jnp.einsum("...e,...eo->...o", hidden, w2.reshape(lead + (self.embed, self.n_out))) + v
        return out[..., 0] if self.n_out == 1 else out


class MonotoneTransform(nn.Module):
    """Soft-QMIX's g_i (Eq. 8, with the residual of its Appendix G): every agent's values,
    each action's alone, through a monotone one-input network whose weights are hypernetworks
    of the state made non-negative,

        g_i(x; s) = x + sum_k |W2_ik(s)| elu(|W1_ik(s)| x + b1_ik(s)) + b2_i(s),

    so the order of an agent's action values (its argmax) is kept. x [..., n, A] -> [..., n, A]."""

    embed: int = 32
    hypernet_embed: int = 64

    @nn.compact
    def __call__(self, x, state):
        n, lead = x.shape[-2], state.shape[:-1]
        shape = lead + (n, 1, self.embed)
        w1 = jnp.abs(hypernet(n * self.embed, 2, self.hypernet_embed)(state)).reshape(shape)
        b1 = _dense(n * self.embed)(state).reshape(shape)
        w2 = jnp.abs(hypernet(n * self.embed, 2, self.hypernet_embed)(state)).reshape(shape)
        b2 = hypernet(n, 2, self.hypernet_embed)(state).reshape(lead + (n, 1))
        return x + jnp.sum(w2 * nn.elu(w1 * x[..., None] + b1), -1) + b2


class AffineTransform(nn.Module):
    """Soft-QMIX's f_i (its Table 5: one hypernetwork layer, no embedding):
    f_i(x; s) = |w_i(s)| x + b_i(s), increasing in x. x [..., n, A] -> [..., n, A]."""

    hypernet_embed: int = 64

    @nn.compact
    def __call__(self, x, state):
        n = x.shape[-2]
        w = jnp.abs(hypernet(n, 2, self.hypernet_embed)(state))[..., None]
        b = hypernet(n, 2, self.hypernet_embed)(state)[..., None]
        return w * x + b


class FOPMixer(nn.Module):
    """FOP's mixer (Zhang et al. 2021; the authors' code, liyheng/FOP ``modules/mixers/fop.py``):
    the IGO factorisation Q_tot = sum_i lambda_i(s, u) (Q_i - V_i) + sum_i V_i + V(s) with
    attention weights lambda_i = sum_h (|k_h(s)| + 1e-10) sigmoid(a_h(s))_i sigmoid(u_h(s, u))_i > 0.
    As the code, the advantages enter the weighted term without gradient and the agents' Q_i
    with gradient 1: Q_tot = sum_i (lambda_i - 1) sg(Q_i - V_i) + sum_i Q_i + V(s) (same value).
    q, v [..., n]; joint_action [..., n, A] one-hots; state [..., S] -> Q_tot [...]."""

    n_heads: int = 4
    embed: int = 32

    @nn.compact
    def __call__(self, q, v, state, joint_action):
        n = q.shape[-1]
        state_action = jnp.concatenate([state, joint_action.reshape(joint_action.shape[:-2] + (-1,))], -1)
        lam = 0.0
        for _ in range(self.n_heads):
            k = jnp.abs(_dense(1)(state)) + 1e-10
            lam = lam + k * nn.sigmoid(_dense(n)(state)) * nn.sigmoid(_dense(n)(state_action))
        v_s = nn.Sequential([_dense(self.embed), nn.relu, _dense(1)])(state)[..., 0]
        adv = jax.lax.stop_gradient(q - v)
        return jnp.sum((lam - 1.0) * adv, -1) + q.sum(-1) + v_s
