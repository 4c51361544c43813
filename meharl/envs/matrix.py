"""One-state, one-step cooperative games: the matrix games of the papers and the
two-agent differentiable game r(a1, a2) = a1 * a2.

Every agent observes the constant 1 (there is one state); the global state is the
concatenation of the observations; every episode terminates after one step.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from meharl.envs.core import AgentSpec, EnvSpec, TimeStep, default_action_mask

_W = -20.0
# name -> (payoff of the joint action, indexed [a1, a2], doc)
PAYOFFS: dict[str, tuple[np.ndarray, str]] = {
    "hasac_3x3": (
        np.array([[5.0, _W, _W], [_W, 10.0, _W], [_W, _W, 20.0]]),
        "HASAC paper, Figure 1a: NEs (A,A)=5, (B,B)=10, (C,C)=20, all else -20",
    ),
    "harl_example1": (
        np.array([[0.0, 2.0], [2.0, -1.0]]),
        "HARL (JMLR) Example 1: r(0,0)=0, r(0,1)=r(1,0)=2, r(1,1)=-1",
    ),
    "soft_qmix_3x3": (
        np.array([[8.0, -12.0, -12.0], [-12.0, 0.0, 0.0], [-12.0, 0.0, 0.0]]),
        "Soft-QMIX Table 1: the non-monotonic 8 / -12 / 0 game",
    ),
    "climbing": (
        np.array([[11.0, -30.0, 0.0], [-30.0, 7.0, 6.0], [0.0, 0.0, 5.0]]),
        "Claus & Boutilier climbing game",
    ),
    "penalty": (
        np.array([[-100.0, 0.0, 10.0], [0.0, 2.0, 0.0], [10.0, 0.0, -100.0]]),
        "Claus & Boutilier penalty game with k = -100",
    ),
}

# The biased initial individual policy of HASAC paper Figure 1b (same for every agent).
HASAC_INITIAL_POLICY = (0.6, 0.2, 0.2)


class _OneStepGame:
    """Shared protocol plumbing: constant observations, terminate after the first step."""

    spec: EnvSpec

    def _timestep(self, reward, terminated):
        n = self.spec.n_agents
        return TimeStep(
            obs=jnp.ones((n, 1)),
            state=jnp.ones((n,)),
            reward=jnp.asarray(reward, jnp.float32),
            terminated=jnp.asarray(terminated),
            truncated=jnp.asarray(False),
            action_mask=default_action_mask(self.spec),
            alive=jnp.ones((n,), bool),
            won=jnp.asarray(False),
        )

    def reset(self, key):
        return jnp.zeros((), jnp.int32), self._timestep(0.0, False)

    def step(self, key, env_state, actions):
        return env_state + 1, self._timestep(self.reward(actions), True)


class MatrixGame(_OneStepGame):
    """An n-agent one-step cooperative game with payoff tensor ``payoff[a1, ..., an]``."""

    def __init__(self, name: str):
        self.payoff = jnp.asarray(PAYOFFS[name][0], jnp.float32)
        self.spec = EnvSpec(
            name=f"matrix/{name}",
            agents=tuple(AgentSpec(obs_dim=1, action_dim=k, discrete=True) for k in self.payoff.shape),
            state_dim=self.payoff.ndim,
            max_steps=1,
        )

    def reward(self, actions):
        return self.payoff[tuple(actions)]


class DifferentiableGame(_OneStepGame):
    """Two agents with actions in [-1, 1]; r(a1, a2) = a1 * a2 (optima at (1,1) and (-1,-1))."""

    def __init__(self):
        self.spec = EnvSpec(
            name="matrix/differentiable",
            agents=(AgentSpec(1, 1, False), AgentSpec(1, 1, False)),
            state_dim=2,
            max_steps=1,
        )

    def reward(self, actions):
        a = jnp.clip(actions[:, 0], -1.0, 1.0)
        return a[0] * a[1]


class PathGame(_OneStepGame):
    """ADER's continuous cooperative matrix game (Kim & Sung, ICML 2023, Section 3.1, Figure 1):
    the joint action (a1, a2) in [-1, 1]^2 is a position. A narrow path runs from the origin to
    (0.6, 0) and on to (0.6, 0.55), where a circle of radius 0.05 centred at (0.6, 0.6) begins.
    The paper gives neither the path's width nor the reward formula; ours (docs/environments/matrix.md):

    - the path is every point within ``HALF_WIDTH`` = 0.05 of its two segments, and the circle;
    - on it, r = 5 (1 - L / 1.2), L the length still to go along the path to the circle's
      centre (1.2 from the origin): 0 at the origin, 2.5 at the junction, 5 at the centre;
    - off it, r = -||(a1, a2)||: a penalty growing with the distance from the origin.
    """

    HALF_WIDTH = 0.05
    JUNCTION, CENTRE, RADIUS = (0.6, 0.0), (0.6, 0.6), 0.05

    def __init__(self):
        self.spec = EnvSpec(name="matrix/ader_path", agents=(AgentSpec(1, 1, False), AgentSpec(1, 1, False)),
                            state_dim=2, max_steps=1)

    def reward(self, actions):
        x, y = jnp.clip(actions[:, 0], -1.0, 1.0)
        (jx, jy), (cx, cy), w = self.JUNCTION, self.CENTRE, self.HALF_WIDTH
        # the points of each segment nearest to (x, y), and the length to go from there
        on_first = jnp.hypot(x - jnp.clip(x, 0.0, jx), y) <= w
        to_go_first = (jx - jnp.clip(x, 0.0, jx)) + (cy - jy)
        on_second = jnp.hypot(x - jx, y - jnp.clip(y, jy, cy - self.RADIUS)) <= w
        to_go_second = cy - jnp.clip(y, jy, cy)
        d_centre = jnp.hypot(x - cx, y - cy)
        in_circle = d_centre <= self.RADIUS
        # where pieces overlap (around the junction, at the circle's edge) the shortest length to go
        to_go = jnp.minimum(jnp.minimum(jnp.where(on_first, to_go_first, jnp.inf), jnp.where(on_second, to_go_second, jnp.inf)),
                            jnp.where(in_circle, d_centre, jnp.inf))
        return jnp.where(on_first | on_second | in_circle, 5.0 * (1.0 - to_go / (cy - jy + jx)), -jnp.hypot(x, y))
