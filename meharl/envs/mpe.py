"""MPE through JaxMARL's JAX implementation, with the papers' conventions:

* team reward = sum of the agents' rewards (HARL's PettingZoo MPE wrapper);
* global state = concatenation of the agents' observations;
* episodes of exactly 25 steps, ended as a truncation. JaxMARL's ``step_env`` sets
  ``done = state.step >= max_steps`` *before* incrementing, so its episodes last 26 steps;
  we count steps ourselves and truncate after the 25th.

Continuous actions (``action_map``): policies act in [-1, 1]. MPE declares Box(0, 1) per
action entry and moves by u = (a[2] - a[1], a[4] - a[3]) * accel, without clipping.

* ``"reference"`` passes the policy's [-1, 1] action through and clips it into Box(0, 1),
  which is what the HARL/HASAC reference code's actions went through (PettingZoo wraps
  continuous MPE in ``ClipOutOfBoundsWrapper``): a policy output below 0 acts as 0;
* ``"box"`` maps [-1, 1] affinely onto Box(0, 1), so every policy output moves the agent.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from meharl.envs._jaxmarl import jaxmarl
from meharl.envs.core import ACTION_MAPS, AgentSpec, EnvSpec, TimeStep, default_action_mask, map_action, pad_obs

EPISODE_LENGTH = 25
TASKS = {
    "simple_spread": "MPE_simple_spread_v3",
    "simple_reference": "MPE_simple_reference_v3",
    "simple_speaker_listener": "MPE_simple_speaker_listener_v4",
}


class MPE:
    def __init__(self, task: str, continuous: bool = True, action_map: str = "reference"):
        if action_map not in ACTION_MAPS:
            raise ValueError(f"invalid mpe_action_map {action_map!r}. Valid choices: {', '.join(ACTION_MAPS)}")
        self.env = jaxmarl.make(TASKS[task], action_type="Continuous" if continuous else "Discrete")
        self.continuous, self.action_map = continuous, action_map
        agents = []
        for a in self.env.agents:
            obs_dim = self.env.observation_spaces[a].shape[0]
            space = self.env.action_spaces[a]
            if continuous:
                agents.append(AgentSpec(obs_dim, space.shape[0], False, float(space.low), float(space.high)))
            else:
                agents.append(AgentSpec(obs_dim, space.n, True))
        self.spec = EnvSpec(
            name=f"mpe/{task}" + ("" if continuous else "_discrete"),
            agents=tuple(agents),
            state_dim=sum(a.obs_dim for a in agents),
            max_steps=EPISODE_LENGTH,
        )

    def _timestep(self, obs_dict, reward, t):
        obs = [obs_dict[a] for a in self.env.agents]
        n = self.spec.n_agents
        return TimeStep(
            obs=pad_obs(obs, self.spec.max_obs_dim),
            state=jnp.concatenate(obs),
            reward=jnp.asarray(reward, jnp.float32),
            terminated=jnp.asarray(False),
            truncated=t >= EPISODE_LENGTH,
            action_mask=default_action_mask(self.spec),
            alive=jnp.ones((n,), bool),
            won=jnp.asarray(False),
        )

    def reset(self, key):
        obs, state = self.env.reset(key)
        return (state, jnp.zeros((), jnp.int32)), self._timestep(obs, 0.0, jnp.zeros((), jnp.int32))

    def env_actions(self, actions):
        """Padded policy actions -> JaxMARL's per-agent action dict."""
        out = {}
        for i, (name, a) in enumerate(zip(self.env.agents, self.spec.agents)):
            if self.continuous:
                out[name] = map_action(actions[i, : a.action_dim], a.low, a.high, self.action_map, xp=jnp)
            else:
                out[name] = actions[i]
        return out

    def step(self, key, env_state, actions):
        state, t = env_state
        obs, state, rewards, _, _ = self.env.step_env(key, state, self.env_actions(actions))
        team_reward = sum(rewards[a] for a in self.env.agents)
        t = t + 1
        return (state, t), self._timestep(obs, team_reward, t)
