"""The centralised Q(s, a) critics of the off-policy actor-critics (HASAC, HADDPG, HATD3,
MADDPG, MATD3): ``n_q`` networks on the global state and the joint action (two for clipped
double Q), one optimiser, the regression step onto a given target."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from meharl.algorithms.base import regression_loss
from meharl.networks import QNetwork


class JointQ:
    def __init__(self, cfg, n_q: int, tx: optax.GradientTransformation):
        self.cfg, self.n_q, self.tx = cfg, n_q, tx
        self.net = QNetwork(cfg.hidden_sizes, cfg.critic_layer_norm)

    def init(self, key, state_dim: int, n_agents: int, action_dim: int):
        """Parameters stacked on a leading axis of n_q, and the optimiser state."""
        state, act = jnp.zeros((state_dim,)), jnp.zeros((n_agents, action_dim))
        params = jax.vmap(lambda k: self.net.init(k, state, act))(jax.random.split(key, self.n_q))
        return params, self.tx.init(params)

    def __call__(self, params, state, joint_action):
        """[n_q, ...] raw outputs (normalised under value_norm). n_q plain matmul chains are
        faster on CPU than one batched (vmapped) chain."""
        return jnp.stack([self.net.apply(jax.tree.map(lambda x: x[j], params), state, joint_action)
                          for j in range(self.n_q)])

    def loss(self, params, state, joint_action, y):
        """Every critic's mean regression loss onto y [B], summed; and the predictions."""
        q = self(params, state, joint_action)
        return regression_loss(q - y[None], self.cfg).mean(-1).sum(), q

    def fit(self, params, opt, state, joint_action, y):
        """One optimiser step of ``loss``. Returns (params, opt, loss, predictions)."""
        (loss, q), grads = jax.value_and_grad(self.loss, has_aux=True)(params, state, joint_action, jax.lax.stop_gradient(y))
        upd, opt = self.tx.update(grads, opt, params)
        return optax.apply_updates(params, upd), opt, loss, q
