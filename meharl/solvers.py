"""Exact heterogeneous-agent soft policy iteration (HASPI, HASAC paper Theorem 2) for n-agent
one-state cooperative matrix games, its alpha = 0 limit, and the QRE check of Theorem 1.

In a one-step game the soft Q-function is the payoff, Q = r (Lemma 4.1 with no next state).
One HASPI iteration draws an agent order and sets, in that order (Eq. 8 / Proposition 1),

    pi_new^{i_m}(a) ∝ exp( E_{a^{i_{1:m-1}} ~ pi_new, a^{-i_{1:m}} ~ pi_old} [ r(a, ...) ] / alpha ),

i.e. each agent soft-best-responds to the already-updated agents' new policies and the
others' old ones. alpha = 0 gives the hard best response (ties split uniformly).
Theorem 1: a joint policy is a QRE iff every agent's policy equals the softmax of its
expected payoff under the others' policies.
"""
from __future__ import annotations

import numpy as np

from meharl.envs.matrix import HASAC_INITIAL_POLICY, PAYOFFS


def expected_payoff(payoff: np.ndarray, policies, i: int) -> np.ndarray:
    """E_{a^{-i} ~ pi^{-i}}[r(a^i, a^{-i})] as a vector over agent i's actions."""
    q = np.moveaxis(payoff, i, 0)
    others = [p for j, p in enumerate(policies) if j != i]
    for p in reversed(others):
        q = q @ p
    return q


def soft_best_response(q: np.ndarray, alpha: float) -> np.ndarray:
    if alpha == 0:
        best = np.isclose(q, q.max(), rtol=0, atol=1e-12)
        return best / best.sum()
    z = (q - q.max()) / alpha
    e = np.exp(z)
    return e / e.sum()


def haspi_iteration(payoff, policies, alpha, order):
    new = [np.asarray(p, float) for p in policies]
    for i in order:  # `new` holds updated policies for agents earlier in `order`, old ones after
        new[i] = soft_best_response(expected_payoff(payoff, new, i), alpha)
    return new


def haspi(payoff, alpha: float, initial=None, order=None, max_iters: int = 100_000, tol: float = 1e-13):
    """Run HASPI to convergence. ``order``: a fixed agent order, default 0..n-1 (the HASAC
    paper's Appendix B assumes agent 1 then agent 2). Returns (first_update, converged, iters)."""
    payoff = np.asarray(payoff, float)
    n = payoff.ndim
    policies = [np.asarray(initial[i] if initial is not None else np.full(k, 1.0 / k), float) for i, k in enumerate(payoff.shape)]
    order = list(range(n)) if order is None else list(order)
    first = None
    for it in range(1, max_iters + 1):
        new = haspi_iteration(payoff, policies, alpha, order)
        first = new if first is None else first
        delta = max(np.abs(a - b).max() for a, b in zip(new, policies))
        policies = new
        if delta < tol:
            break
    return first, policies, it


def qre_residual(payoff, policies, alpha: float) -> float:
    """max_i || pi^i - softmax(E_{pi^{-i}}[r] / alpha) ||_inf; 0 exactly at a QRE (Theorem 1)."""
    payoff = np.asarray(payoff, float)
    return max(
        np.abs(np.asarray(p) - soft_best_response(expected_payoff(payoff, policies, i), alpha)).max()
        for i, p in enumerate(policies)
    )


def solve_game(game: str, alpha: float, initial: str | None = "default"):
    """Named game of meharl.envs.matrix. ``initial='default'`` uses the HASAC paper's biased
    (0.6, 0.2, 0.2) for ``hasac_3x3`` and uniform elsewhere."""
    if game not in PAYOFFS:
        raise ValueError(f"unknown game {game!r}. Valid choices: {', '.join(PAYOFFS)}")
    if not (np.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"invalid alpha={alpha}: must be a finite number >= 0")
    payoff = PAYOFFS[game][0]
    init = None
    if initial == "default" and game == "hasac_3x3":
        init = [HASAC_INITIAL_POLICY] * payoff.ndim
    first, conv, iters = haspi(payoff, alpha, init)
    return {
        "game": game,
        "alpha": alpha,
        "first_update": [p.tolist() for p in first],
        "converged": [p.tolist() for p in conv],
        "iterations": iters,
        "qre_residual": qre_residual(payoff, conv, alpha) if alpha > 0 else None,
    }
