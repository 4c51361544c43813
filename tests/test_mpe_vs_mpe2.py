"""JaxMARL's MPE through our adapter matches PettingZoo's MPE (mpe2) step for step:
same observations and same team reward (sum of agents' rewards) for the same actions,
from the same initial positions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meharl.envs import make

mpe2 = pytest.importorskip("mpe2", reason="mpe2 is a test extra: pip install -e .[test]")


def _mpe2_env(task, continuous):
    module = {
        "simple_spread": "simple_spread_v3",
        "simple_reference": "simple_reference_v3",
        "simple_speaker_listener": "simple_speaker_listener_v4",
    }[task]
    mod = __import__(f"mpe2.{module}", fromlist=["parallel_env"])
    return mod.parallel_env(max_cycles=25, continuous_actions=continuous)


def _copy_state(ours, pz, task):
    """Our JaxMARL state with mpe2's positions (and goals)."""
    world = pz.unwrapped.world
    ents = world.agents + world.landmarks
    (state, t) = ours
    state = state.replace(
        p_pos=jnp.asarray(np.array([e.state.p_pos for e in ents]), jnp.float32),
        p_vel=jnp.zeros_like(state.p_vel),
    )
    if task == "simple_speaker_listener":
        state = state.replace(goal=jnp.asarray(world.landmarks.index(world.agents[0].goal_b)))
    if task == "simple_reference":
        # mpe2: agent j's goal_b is the landmark the *other* agent must reach (goal_a);
        # JaxMARL: goal[j] is the landmark agent j must reach
        goals = [world.landmarks.index(a.goal_b) for a in world.agents][::-1]
        state = state.replace(goal=jnp.asarray(goals))
    return (state, t)


@pytest.mark.parametrize("task", ["simple_spread", "simple_speaker_listener", "simple_reference"])
@pytest.mark.parametrize("continuous, action_map", [(True, "reference"), (True, "box"), (False, None)])
def test_same_observations_and_rewards(task, continuous, action_map):
    env = make(f"mpe/{task}", action_map=action_map) if continuous else make(f"mpe/{task}_discrete")
    pz = _mpe2_env(task, continuous)
    pz_obs, _ = pz.reset(seed=3)
    ours, _ = env.reset(jax.random.PRNGKey(0))
    ours = _copy_state(ours, pz, task)
    rng = np.random.default_rng(0)
    step = jax.jit(env.step)
    for t in range(25):
        if continuous:
            pol = rng.uniform(-1, 1, (env.spec.n_agents, env.spec.max_action_dim)).astype(np.float32)
            pol *= env.spec.action_dim_mask
            # what mpe2 receives: the policy action itself, which mpe2 clips into Box(0, 1) as it
            # did the reference code's (reference), or the action mapped onto Box(0, 1) (box)
            to_pz = (lambda x: x) if action_map == "reference" else (lambda x: (x + 1) / 2)
            acts = {name: to_pz(pol[i, : a.action_dim]) for i, (name, a) in enumerate(zip(pz.agents, env.spec.agents))}
            ours_actions = jnp.asarray(pol)
        else:
            idx = np.array([rng.integers(a.action_dim) for a in env.spec.agents])
            acts = {name: int(idx[i]) for i, name in enumerate(pz.agents)}
            ours_actions = jnp.asarray(idx)
        names = list(pz.agents)
        pz_obs, pz_rew, pz_term, pz_trunc, _ = pz.step(acts)
        ours, ts = step(jax.random.PRNGKey(t), ours, ours_actions)
        for i, (name, a) in enumerate(zip(names, env.spec.agents)):
            np.testing.assert_allclose(np.asarray(ts.obs[i, : a.obs_dim]), pz_obs[name], atol=1e-4, err_msg=f"step {t} {name}")
        assert float(ts.reward) == pytest.approx(sum(pz_rew.values()), abs=1e-3), t
        assert bool(ts.truncated) == all(pz_trunc.values())
