"""HATRPO (HARL paper, Algorithm 5 / Appendix C): the sequential template with a KL ball as
each agent's neighbourhood operator. Agent i's step maximises the M-weighted surrogate
L(theta) = E[r A M] (+ the temperature's entropy term under MEHAML) inside
KL(pi_old || pi_theta) <= kl_threshold:

    x  = F^-1 g                 conjugate gradient (cg_iters), F the KL's Hessian + cg_damping I
    s  = sqrt(2 kl_threshold / x'Fx) x
    theta = theta_old + c^k s   the first k < ls_steps (c = backtrack_coeff) whose KL is below
                                the threshold and whose improvement is > 0 and > accept_ratio
                                of the expected one (g's first-order prediction)

and keeps the old parameters when no k passes.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from meharl.algorithms.onpolicy import OnPolicyConfig, OnPolicyHA, masked_mean, ratio_surrogate
from meharl.config import key


@dataclass(frozen=True)
class HATRPOConfig(OnPolicyConfig):
    kl_threshold: float = key(0.01, "radius of the KL ball of each agent's step", "positive")
    cg_iters: int = key(10, "conjugate gradient iterations", "positive")
    cg_damping: float = key(0.1, "damping added to the Fisher-vector product", "nonneg")
    backtrack_coeff: float = key(0.8, "line-search shrink factor", "unit")
    ls_steps: int = key(10, "line-search trials", "positive")
    accept_ratio: float = key(0.5, "accept a step improving more than this share of the expected", "nonneg")
    entropy_coef: float = key(0.0, "entropy bonus of the actors (besides alpha; the reference's HATRPO has none)",
                              "nonneg")


def conjugate_gradient(matvec, b, iters: int):
    """Solve A x = b for a symmetric positive definite A given as ``matvec``."""
    def body(_, c):
        x, r, p, rr = c
        Ap = matvec(p)
        a = rr / jnp.maximum(p @ Ap, 1e-12)
        x, r = x + a * p, r - a * Ap
        rr_new = r @ r
        return x, r, r + (rr_new / jnp.maximum(rr, 1e-12)) * p, rr_new

    return jax.lax.fori_loop(0, iters, body, (jnp.zeros_like(b), b, b, b @ b))[0]


class HATRPO(OnPolicyHA):
    Config = HATRPOConfig
    metrics = ("value_loss", "policy_loss", "entropy", "kl", "accepted")
    description = "Heterogeneous-Agent TRPO (Kuba et al. 2022; HARL, JMLR 2024): sequential, KL-constrained"

    def agent_stats(self):
        return ("policy_loss", "entropy", "kl", "accepted")

    def agent_update(self, params, opt, i, d, key, entropy_weight):
        cfg = self.cfg
        theta0, unravel = ravel_pytree(params)
        old_out = jax.lax.stop_gradient(self.agent_outputs(params, i, d))

        def surrogate(theta):  # to maximise
            loss, (policy_loss, entropy) = self.agent_objective(unravel(theta), i, d, entropy_weight, ratio_surrogate)
            return -loss, entropy

        def kl(theta):
            return masked_mean(self.dist.kl(old_out, self.agent_outputs(unravel(theta), i, d), self.dim_mask[i], d.avail),
                               d.alive)

        (l0, entropy), g = jax.value_and_grad(surrogate, has_aux=True)(theta0)

        def fisher(v):
            return jax.grad(lambda t: jax.grad(kl)(t) @ v)(theta0) + cfg.cg_damping * v

        x = conjugate_gradient(fisher, g, cfg.cg_iters)
        step = x * jnp.sqrt(2.0 * cfg.kl_threshold / jnp.maximum(x @ fisher(x), 1e-12))
        fractions = cfg.backtrack_coeff ** jnp.arange(cfg.ls_steps)
        candidates = theta0[None] + fractions[:, None] * step[None]
        gains = jax.vmap(lambda t: surrogate(t)[0])(candidates) - l0
        kls = jax.vmap(kl)(candidates)
        expected = fractions * (g @ step)
        ok = (kls < cfg.kl_threshold) & (gains > 0) & (gains > cfg.accept_ratio * expected)
        accepted = ok.any()
        theta = jnp.where(accepted, candidates[jnp.argmax(ok)], theta0)
        return unravel(theta), opt, {"policy_loss": -l0, "entropy": entropy, "accepted": accepted.astype(jnp.float32)}
