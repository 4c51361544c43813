"""Actors, critics and the action distributions of HASAC.

Heterogeneous agents are padded (DESIGN.md): an actor sees a zero-padded observation plus
its mask and emits ``max_action_dim`` outputs, of which only the agent's own are used.
Padding is exact: masked inputs are zeroed before the first layer (and the optional
feature normalisation averages over real features only), and padded action dimensions are
zeroed in actions and excluded from log-probabilities and entropies.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
MASKED_LOGIT = -1e9


class MaskedLayerNorm(nn.Module):
    """LayerNorm over the real features only (``mask`` = 1), so padding is exact."""

    eps: float = 1e-5

    @nn.compact
    def __call__(self, x, mask):
        n = jnp.maximum(mask.sum(-1, keepdims=True), 1.0)
        mean = (x * mask).sum(-1, keepdims=True) / n
        var = (jnp.square(x - mean) * mask).sum(-1, keepdims=True) / n
        y = (x - mean) * jax.lax.rsqrt(var + self.eps)
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],))
        bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],))
        return (y * scale + bias) * mask


def _dense(features, scale=1.0):
    """PyTorch's default Linear init (uniform, variance 1/(3 fan_in)), the reference's for its
    continuous actors and critics, with the kernel scaled by ``scale``. Not orthogonal init:
    jaxlib 0.10's batched QR kernel deadlocks on a 2-thread CPU pool (see the README)."""
    return nn.Dense(features, kernel_init=nn.initializers.variance_scaling(scale**2 / 3.0, "fan_in", "uniform"),
                    bias_init=nn.initializers.zeros)


class MLP(nn.Module):
    """ReLU hidden layers (the last one tanh when ``final_tanh``) and a linear head;
    ``hidden_norm`` puts a LayerNorm between each hidden layer's Dense and its activation."""

    hidden: Sequence[int]
    out: int
    out_gain: float = 0.01
    feature_norm: bool = False
    final_tanh: bool = False
    hidden_norm: bool = False

    @nn.compact
    def __call__(self, x, mask):
        x = MaskedLayerNorm()(x, mask) if self.feature_norm else x * mask
        for k, h in enumerate(self.hidden):
            x = _dense(h)(x)
            x = nn.LayerNorm()(x) if self.hidden_norm else x
            x = jnp.tanh(x) if self.final_tanh and k == len(self.hidden) - 1 else nn.relu(x)
        return _dense(self.out, self.out_gain)(x)


class Actor(nn.Module):
    """Continuous: (mean, log_std) of a tanh-squashed Gaussian, on a ReLU MLP whose last
    hidden layer is tanh (the reference's SquashedGaussianPolicy). Discrete: logits."""

    hidden: Sequence[int]
    action_dim: int
    discrete: bool
    feature_norm: bool = False

    @nn.compact
    def __call__(self, obs, obs_mask):
        out = self.action_dim if self.discrete else 2 * self.action_dim
        return MLP(self.hidden, out, 0.01, self.feature_norm, final_tanh=not self.discrete)(obs, obs_mask)


class QNetwork(nn.Module):
    """Centralised soft Q(s, a) on the global state and the (padded, flattened) joint action.
    ``layer_norm``: LayerNorm in the hidden layers (not in the reference; Ball et al. 2023 use
    it to keep off-policy critics from diverging)."""

    hidden: Sequence[int]
    layer_norm: bool = False

    @nn.compact
    def __call__(self, state, joint_action):
        x = jnp.concatenate([state, joint_action.reshape(*joint_action.shape[:-2], -1)], -1)
        return MLP(self.hidden, 1, 1.0, hidden_norm=self.layer_norm)(x, jnp.ones_like(x))[..., 0]


class DeterministicActor(nn.Module):
    """mu(o) in [-1, 1]^d: a ReLU MLP with a tanh output (the reference's DeterministicPolicy,
    PyTorch's default init)."""

    hidden: Sequence[int]
    action_dim: int
    feature_norm: bool = False

    @nn.compact
    def __call__(self, obs, obs_mask):
        return jnp.tanh(MLP(self.hidden, self.action_dim, 1.0, self.feature_norm)(obs, obs_mask))


class DuelingQ(nn.Module):
    """Dueling Q-values (Wang et al. 2016), the reference's DuelingQNet: a ReLU base, then value
    and advantage heads with Hardswish hidden layers, Q = V + A - mean(A). ``choices``: 1 for the
    real outputs (the mean is over those; padded outputs are not choices)."""

    base: Sequence[int]
    v_hidden: Sequence[int]
    a_hidden: Sequence[int]
    n_out: int
    feature_norm: bool = False
    layer_norm: bool = False  # LayerNorm in the base's hidden layers (as QNetwork's)

    @nn.compact
    def __call__(self, x, mask, choices):
        x = MLP(self.base[:-1], self.base[-1], 1.0, self.feature_norm, hidden_norm=self.layer_norm)(x, mask)
        x = nn.relu(nn.LayerNorm()(x) if self.layer_norm else x)

        def head(hidden, out):
            h = x
            for width in hidden:
                h = nn.hard_swish(_dense(width)(h))
            return _dense(out)(h)

        v, a = head(self.v_hidden, 1), head(self.a_hidden, self.n_out)
        mean_a = jnp.sum(a * choices, -1, keepdims=True) / jnp.maximum(choices.sum(-1, keepdims=True), 1.0)
        return v + a - mean_a


# ---------------------------------------------------------------------------------------
# Distributions. ``dim_mask``: [action_dim] float, 1 for the agent's real dims / choices.


def tanh_gaussian_sample(out, dim_mask, key, deterministic=False, log_std_shift=0.0):
    """Reparameterised sample a = tanh(mu + sigma * eps) and its log-density
    log N(u; mu, sigma) - sum log(1 - tanh(u)^2) over the real dims. ``log_std_shift`` is
    added to every log sigma (ADER's metric differentiates through it)."""
    mu, log_std = jnp.split(out, 2, axis=-1)
    log_std = jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX) + log_std_shift
    eps = jnp.where(deterministic, 0.0, jax.random.normal(key, mu.shape))
    u = mu + jnp.exp(log_std) * eps
    # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|
    log_det = 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    logp = -0.5 * jnp.square(eps) - log_std - 0.5 * jnp.log(2.0 * jnp.pi) - log_det
    return jnp.tanh(u) * dim_mask, jnp.sum(logp * dim_mask, -1)


def tanh_gaussian_log_prob(out, dim_mask, action):
    """log-density of a given squashed action (used by tests and diagnostics)."""
    mu, log_std = jnp.split(out, 2, axis=-1)
    log_std = jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)
    a = jnp.clip(action, -1.0 + 1e-6, 1.0 - 1e-6)
    u = jnp.arctanh(a)
    eps = (u - mu) / jnp.exp(log_std)
    log_det = 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    logp = -0.5 * jnp.square(eps) - log_std - 0.5 * jnp.log(2.0 * jnp.pi) - log_det
    return jnp.sum(logp * dim_mask, -1)


def masked_log_softmax(logits, mask):
    return jax.nn.log_softmax(jnp.where(mask > 0, logits, MASKED_LOGIT), -1)


def categorical_entropy(logits, mask):
    logp = masked_log_softmax(logits, mask)
    return -jnp.sum(jnp.where(mask > 0, jnp.exp(logp) * logp, 0.0), -1)


def categorical_sample(logits, mask, key, deterministic=False, gumbel_tau=1.0):
    """One-hot action and its log-probability. The one-hot is a straight-through
    Gumbel-softmax sample (forward: the hard sample; backward: the relaxed one), and
    log pi(a) = <onehot, log_softmax(logits)>, as in the reference implementation."""
    logp_all = masked_log_softmax(logits, mask)
    g = jnp.where(deterministic, 0.0, jax.random.gumbel(key, logits.shape))
    z = logp_all + g
    soft = jax.nn.softmax(jnp.where(mask > 0, z / gumbel_tau, MASKED_LOGIT), -1)
    hard = jax.nn.one_hot(jnp.argmax(jnp.where(mask > 0, z, MASKED_LOGIT), -1), logits.shape[-1])
    onehot = hard + (soft - jax.lax.stop_gradient(soft))  # exactly one-hot forward
    return onehot, jnp.sum(jnp.where(mask > 0, onehot * logp_all, 0.0), -1)


def policy_sample(out, discrete, dim_mask, avail_mask, key, deterministic=False):
    """Sample an agent's action (continuous vector or one-hot) and its log-probability."""
    if discrete:
        return categorical_sample(out, dim_mask * avail_mask, key, deterministic)
    return tanh_gaussian_sample(out, dim_mask, key, deterministic)


# ---------------------------------------------------------------------------------------
# On-policy (HAPPO, HATRPO, HAA2C, MAPPO): the reference's DiagGaussian and a V critic.


def _policy_head(module, out, discrete: bool, std_x_coef: float, std_y_coef: float):
    """Logits, or [mean, std] of the reference's DiagGaussian (see StochasticPolicy), from the
    output layer's ``out``."""
    if discrete:
        return out
    log_std = module.param("log_std", nn.initializers.constant(std_x_coef), (out.shape[-1],))
    std = jax.nn.sigmoid(log_std / std_x_coef) * std_y_coef
    return jnp.concatenate([out, jnp.broadcast_to(std, out.shape)], -1)


class StochasticPolicy(nn.Module):
    """The on-policy actor. Discrete: logits. Continuous: a Gaussian (not squashed) whose mean
    is the MLP's output and whose std is state-independent, parametrised as the reference's
    DiagGaussian: std = sigmoid(log_std / std_x_coef) * std_y_coef, log_std initialised to
    std_x_coef. The output is [mean, std] (2 * action_dim) so both kinds are one array."""

    hidden: Sequence[int]
    action_dim: int
    discrete: bool
    feature_norm: bool = False
    std_x_coef: float = 1.0
    std_y_coef: float = 0.5

    @nn.compact
    def __call__(self, obs, obs_mask):
        out = MLP(self.hidden, self.action_dim, 0.01, self.feature_norm)(obs, obs_mask)
        return _policy_head(self, out, self.discrete, self.std_x_coef, self.std_y_coef)


class VNetwork(nn.Module):
    """Centralised V(s) on the global state."""

    hidden: Sequence[int]
    feature_norm: bool = False

    @nn.compact
    def __call__(self, state):
        return MLP(self.hidden, 1, 1.0, self.feature_norm)(state, jnp.ones_like(state))[..., 0]


class GRUTorso(nn.Module):
    """The reference's recurrent base: the MLP's hidden layers, then a GRU cell of the last
    width whose state is zeroed where an episode starts, then LayerNorm. Returns (features,
    new state)."""

    hidden: Sequence[int]
    feature_norm: bool = False
    out_norm: bool = True  # the LayerNorm on the output (HARL's; pymarl's RNNAgent has none)

    @nn.compact
    def __call__(self, x, mask, h, start):
        x = MLP(self.hidden[:-1], self.hidden[-1], 1.0, self.feature_norm)(x, mask)
        h = jnp.where(start[..., None] > 0, 0.0, h)
        # not flax's default orthogonal recurrent init (jaxlib 0.10's batched QR, see _dense)
        cell = nn.GRUCell(self.hidden[-1], recurrent_kernel_init=nn.initializers.lecun_normal())
        h, _ = cell(h, nn.relu(x))
        return (nn.LayerNorm()(h) if self.out_norm else h), h


class RecurrentPolicy(StochasticPolicy):
    """StochasticPolicy on a GRUTorso: (obs, obs_mask, h, start) -> (out, h')."""

    @nn.compact
    def __call__(self, obs, obs_mask, h, start):
        x, h = GRUTorso(self.hidden, self.feature_norm)(obs, obs_mask, h, start)
        out = _dense(self.action_dim, 0.01)(x)
        return _policy_head(self, out, self.discrete, self.std_x_coef, self.std_y_coef), h


class RecurrentV(nn.Module):
    """V(s) on a GRUTorso: (state, h, start) -> (value, h')."""

    hidden: Sequence[int]
    feature_norm: bool = False

    @nn.compact
    def __call__(self, state, h, start):
        x, h = GRUTorso(self.hidden, self.feature_norm)(state, jnp.ones_like(state), h, start)
        return _dense(1)(x)[..., 0], h


class RecurrentQ(nn.Module):
    """pymarl's RNNAgent: Dense + ReLU, a GRU cell reset where an episode starts, a linear head
    of one value per action: (x, h, start) -> (Q [..., A], h')."""

    hidden: int
    n_actions: int

    @nn.compact
    def __call__(self, x, h, start):
        x, h = GRUTorso((self.hidden,), out_norm=False)(x, jnp.ones_like(x), h, start)
        return _dense(self.n_actions)(x), h


def recurrent_q_sequence(net: RecurrentQ, variables, x, start):
    """``net`` over sequences from a zero state, x [T, ..., D], start [T, ...] ->
    (Q [T, ..., A], h [T, ..., H]), equal to calling it step by step: the two Dense layers
    act on all steps at once and only the GRU cell is scanned (a scan step's cost is its
    op count here, so fewer ops per step is a faster loop, forward and backward). The
    batch axes are folded into one: XLA's CPU matmuls are faster on [rows, D] operands
    than on batched ones (docs/algorithms/value-based.md, speed)."""
    batch = x.shape[1:-1]
    x, start = x.reshape(x.shape[0], -1, x.shape[-1]), start.reshape(start.shape[0], -1)
    q, hs = _recurrent_q_rows(net, variables, x, start)
    return q.reshape(q.shape[:1] + batch + q.shape[-1:]), hs.reshape(hs.shape[:1] + batch + hs.shape[-1:])


def recurrent_q_step(net: RecurrentQ, variables, x, h, start):
    """One step of ``net``, x [..., D], h [..., H], start broadcastable to x's batch axes
    [...], with the batch axes folded into one as in :func:`recurrent_q_sequence`:
    (Q [..., A], h')."""
    batch = x.shape[:-1]
    q, h = net.apply(variables, x.reshape(-1, x.shape[-1]), h.reshape(-1, h.shape[-1]),
                     jnp.broadcast_to(start, batch).reshape(-1))
    return q.reshape(batch + q.shape[-1:]), h.reshape(batch + h.shape[-1:])


def _recurrent_q_rows(net: RecurrentQ, variables, x, start):
    p = variables["params"]
    torso = p["GRUTorso_0"]
    dense = lambda d, v: v @ d["kernel"] + d["bias"]  # noqa: E731 (flax's Dense)
    e = nn.relu(dense(torso["MLP_0"]["Dense_0"], x))
    cell = nn.GRUCell(net.hidden)

    def step(h, xs):
        e_t, start_t = xs
        h = jnp.where(start_t[..., None] > 0, 0.0, h)
        h, _ = cell.apply({"params": torso["GRUCell_0"]}, h, e_t)
        return h, h

    _, hs = jax.lax.scan(step, jnp.zeros(x.shape[1:-1] + (net.hidden,)), (e, start))
    return dense(p["Dense_0"], hs), hs


def gaussian_log_prob(out, dim_mask, action):
    mu, std = jnp.split(out, 2, axis=-1)
    logp = -0.5 * jnp.square((action - mu) / std) - jnp.log(std) - 0.5 * jnp.log(2.0 * jnp.pi)
    return jnp.sum(logp * dim_mask, -1)


def gaussian_entropy(out, dim_mask):
    _, std = jnp.split(out, 2, axis=-1)
    return jnp.sum((0.5 + 0.5 * jnp.log(2.0 * jnp.pi) + jnp.log(std)) * dim_mask, -1)


def gaussian_kl(old, new, dim_mask):
    """KL(old || new) of two diagonal Gaussians, over the real dims."""
    mu0, s0 = jnp.split(old, 2, axis=-1)
    mu1, s1 = jnp.split(new, 2, axis=-1)
    kl = jnp.log(s1 / s0) + (jnp.square(s0) + jnp.square(mu0 - mu1)) / (2.0 * jnp.square(s1)) - 0.5
    return jnp.sum(kl * dim_mask, -1)


def categorical_kl(old_logits, new_logits, mask):
    lp0, lp1 = masked_log_softmax(old_logits, mask), masked_log_softmax(new_logits, mask)
    return jnp.sum(jnp.where(mask > 0, jnp.exp(lp0) * (lp0 - lp1), 0.0), -1)


class Distribution:
    """log-probability, entropy, KL and sampling of one agent's policy output ``out`` with its
    real-dimension mask and available actions; actions are vectors (continuous) or one-hots."""

    def __init__(self, discrete: bool):
        self.discrete = discrete

    def sample(self, out, dim_mask, avail, key, deterministic=False):
        if self.discrete:
            m = dim_mask * avail
            logits = jnp.where(m > 0, out, MASKED_LOGIT)
            idx = jnp.where(deterministic, jnp.argmax(logits, -1), jax.random.categorical(key, logits))
            a = jax.nn.one_hot(idx, out.shape[-1])
        else:
            mu, std = jnp.split(out, 2, axis=-1)
            a = (mu + jnp.where(deterministic, 0.0, std * jax.random.normal(key, mu.shape))) * dim_mask
        return a, self.log_prob(out, dim_mask, avail, a)

    def log_prob(self, out, dim_mask, avail, action):
        if self.discrete:
            m = dim_mask * avail
            return jnp.sum(jnp.where(m > 0, action * masked_log_softmax(out, m), 0.0), -1)
        return gaussian_log_prob(out, dim_mask, action)

    def entropy(self, out, dim_mask, avail):
        return categorical_entropy(out, dim_mask * avail) if self.discrete else gaussian_entropy(out, dim_mask)

    def kl(self, old, new, dim_mask, avail):
        return categorical_kl(old, new, dim_mask * avail) if self.discrete else gaussian_kl(old, new, dim_mask)
