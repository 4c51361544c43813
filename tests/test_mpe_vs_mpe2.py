"""JaxMARL's MPE through our adapter matches PettingZoo's MPE (mpe2) through our host-stepped
adapter (``pz_mpe/*``) step for step: same observations, global state, team reward (sum of
agents' rewards) and truncation for the same policy actions, from the same initial
positions. So both give the same returns for the same policy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meharl.envs import make

mpe2 = pytest.importorskip("mpe2", reason="mpe2 is a test extra: pip install -e .[test]")


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
    suffix = "" if continuous else "_discrete"
    options = {"action_map": action_map} if continuous else {}
    env = make(f"mpe/{task}{suffix}", **options)
    joint = make(f"pz_mpe/{task}{suffix}", **options)()
    joint.reset(seed=3)
    ours, _ = env.reset(jax.random.PRNGKey(0))
    ours = _copy_state(ours, joint.env, task)
    rng = np.random.default_rng(0)
    step = jax.jit(env.step)
    for t in range(25):
        if continuous:
            # policy actions in [-1, 1]; both adapters map them onto MPE's Box(0, 1) by action_map
            pol = rng.uniform(-1, 1, (env.spec.n_agents, env.spec.max_action_dim)).astype(np.float32)
            pol *= env.spec.action_dim_mask
        else:
            pol = np.array([rng.integers(a.action_dim) for a in env.spec.agents])
        pz_obs, pz_reward, pz_term, pz_trunc, _ = joint.step(pol)
        ours, ts = step(jax.random.PRNGKey(t), ours, jnp.asarray(pol))
        np.testing.assert_allclose(np.asarray(ts.obs), pz_obs["obs"], atol=1e-4, err_msg=f"step {t}")
        np.testing.assert_allclose(np.asarray(ts.state), pz_obs["state"], atol=1e-4, err_msg=f"step {t}")
        assert float(ts.reward) == pytest.approx(pz_reward, abs=1e-3), t
        assert bool(ts.truncated) == pz_trunc and bool(ts.terminated) == pz_term == False  # noqa: E712


def test_reference_map_is_what_pettingzoo_did_to_the_reference_actions():
    # the reference code's tanh output went to mpe2 unchanged, which clipped it into Box(0, 1)
    joint = make("pz_mpe/simple_spread", action_map="reference")()
    a = np.array([[-0.5, 0.2, 1.0, -1.0, 0.7]] * 3, np.float32)
    np.testing.assert_allclose(joint.env_actions(a)["agent_0"], [0.0, 0.2, 1.0, 0.0, 0.7])
    box = make("pz_mpe/simple_spread", action_map="box")()
    np.testing.assert_allclose(box.env_actions(a)["agent_0"], (a[0] + 1) / 2)
