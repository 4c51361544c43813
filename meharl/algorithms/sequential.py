"""The (ME)HAML sequential template (HARL Algorithm Template 2; HASAC paper Algorithm 1).

Each iteration draws a permutation of the agents (``fixed_order``: the identity, for the
ablation) and updates them one after another; agent ``perm[m]`` optimises its objective
against the agents ``perm[:m]`` already updated in this iteration. What is carried from one
agent to the next is the algorithm's: the re-sampled actions of the updated agents (HASAC,
HADDPG, HATD3), the compound ratio M of their new and old policies (HAPPO, HATRPO, HAA2C),
their greedy actions (HAD3QN). The three plug-ins of the template are the algorithm's too:
its drift functional and neighbourhood operator live in its per-agent step (a PPO clip, a
KL ball, nothing for the whole policy space), its sampling distribution is the runner's
(on-policy rollouts or replay), and a temperature alpha > 0 turns HAML into MEHAML.

This module is the one place that knows about permutations and per-agent parameter slots:

    order(key, n, fixed_order)                  the permutation of one iteration
    AgentSlots(n, share_param).get / .put       agent i's parameters in the stacked pytree
    sequential(n, perm, step, carry)            carry = step(m, perm[m], carry) for m = 0..n-1

``sequential`` is one ``lax.fori_loop`` with dynamic indexing, so any number of agents (17
for Humanoid) compiles one body; with few agents it is unrolled, which lets XLA share the
forward passes of neighbouring positions.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

UNROLL_UP_TO = 8  # agents; beyond, the loop body is compiled once


def order(key, n: int, fixed_order: bool):
    """The update order of one iteration: a fresh random permutation, or 0..n-1."""
    return jnp.arange(n) if fixed_order else jax.random.permutation(key, n)


class AgentSlots:
    """Parameters (and optimiser states) of all agents stacked on a leading axis: one slot per
    agent, or a single slot that every agent reads and writes under ``share_param``."""

    def __init__(self, n_agents: int, share_param: bool):
        self.n_slots = 1 if share_param else n_agents
        self.index = np.zeros(n_agents, np.int32) if share_param else np.arange(n_agents, dtype=np.int32)

    def get(self, tree, i):
        """Agent i's slot (``i`` may be traced)."""
        s = jnp.asarray(self.index)[i]
        return jax.tree.map(lambda x: x[s], tree)

    def put(self, tree, i, value):
        s = jnp.asarray(self.index)[i]
        return jax.tree.map(lambda x, v: x.at[s].set(v), tree, value)

    def per_agent(self, tree):
        """The stacked tree with one entry per agent (slots repeated under sharing)."""
        return jax.tree.map(lambda x: x[self.index], tree)


def sequential(n: int, perm, step, carry):
    """Run ``carry = step(m, perm[m], carry)`` for the positions m = 0..n-1."""
    return jax.lax.fori_loop(0, n, lambda m, c: step(m, perm[m], c), carry, unroll=n <= UNROLL_UP_TO)
