"""Protocol conformance of every environment (DESIGN.md) and the papers' conventions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meharl.envs import ENV_NAMES, PAYOFFS, TimeStep, make, step_autoreset


def _actions(spec, key):
    if spec.discrete:
        return jnp.stack([jax.random.randint(jax.random.fold_in(key, i), (), 0, a.action_dim) for i, a in enumerate(spec.agents)])
    return jax.random.uniform(key, (spec.n_agents, spec.max_action_dim), minval=-1, maxval=1) * jnp.asarray(spec.action_dim_mask)


@pytest.mark.parametrize("name", ENV_NAMES)
def test_protocol(name):
    env = make(name)
    spec = env.spec
    state, ts = jax.jit(env.reset)(jax.random.PRNGKey(0))
    assert isinstance(ts, TimeStep)
    assert ts.obs.shape == (spec.n_agents, spec.max_obs_dim)
    assert ts.state.shape == (spec.state_dim,)
    assert ts.reward.shape == () and ts.terminated.dtype == bool and ts.truncated.dtype == bool
    assert ts.action_mask.shape == (spec.n_agents, spec.max_action_dim) and ts.action_mask.dtype == bool
    assert ts.alive.shape == (spec.n_agents,)
    # padding: observation entries beyond an agent's size are exactly zero
    assert np.all(np.asarray(ts.obs)[np.asarray(spec.obs_mask) == 0] == 0)
    step = jax.jit(env.step)
    lengths, t = [], 0
    for k in range(2 * spec.max_steps + 1):
        state, ts = step(jax.random.PRNGKey(k + 1), state, _actions(spec, jax.random.PRNGKey(100 + k)))
        t += 1
        assert np.all(np.asarray(ts.obs)[np.asarray(spec.obs_mask) == 0] == 0)
        assert not (bool(ts.terminated) and bool(ts.truncated))
        if bool(ts.done):
            lengths.append(t)
            t = 0
            state, ts = env.reset(jax.random.PRNGKey(1000 + k))
    assert lengths and all(length <= spec.max_steps for length in lengths)
    # vmappable over a batch of envs
    states, tss = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(3), 4))
    assert tss.obs.shape == (4, spec.n_agents, spec.max_obs_dim)


@pytest.mark.parametrize("name", [n for n in ENV_NAMES if n.startswith("mpe/")])
def test_mpe_episode_is_25_steps_ending_in_truncation(name):
    env = make(name)
    state, ts = env.reset(jax.random.PRNGKey(0))
    step = jax.jit(env.step)
    for t in range(1, 26):
        state, ts = step(jax.random.PRNGKey(t), state, _actions(env.spec, jax.random.PRNGKey(t)))
        assert bool(ts.truncated) == (t == 25), t
        assert not bool(ts.terminated)
    # global state = concatenation of the agents' (unpadded) observations
    obs = [np.asarray(ts.obs[i, : a.obs_dim]) for i, a in enumerate(env.spec.agents)]
    np.testing.assert_array_equal(np.asarray(ts.state), np.concatenate(obs))


def test_speaker_listener_is_heterogeneous():
    spec = make("mpe/simple_speaker_listener").spec
    assert [a.obs_dim for a in spec.agents] == [3, 11]
    assert [a.action_dim for a in spec.agents] == [3, 5]
    assert not spec.homogeneous


@pytest.mark.parametrize("game", sorted(PAYOFFS))
def test_matrix_game_pays_the_matrix_and_terminates(game):
    env = make(f"matrix/{game}")
    payoff = PAYOFFS[game][0]
    state, _ = env.reset(jax.random.PRNGKey(0))
    for joint in np.ndindex(*payoff.shape):
        _, ts = env.step(jax.random.PRNGKey(0), state, jnp.asarray(joint))
        assert float(ts.reward) == payoff[joint]
        assert bool(ts.terminated) and not bool(ts.truncated)


def test_hasac_game_is_figure_1a():
    p = PAYOFFS["hasac_3x3"][0]
    assert np.diag(p).tolist() == [5, 10, 20]
    assert np.all(p[~np.eye(3, dtype=bool)] == -20)


def test_differentiable_game():
    env = make("matrix/differentiable")
    state, _ = env.reset(jax.random.PRNGKey(0))
    for a1, a2 in [(1.0, 1.0), (-1.0, -1.0), (0.5, -0.4), (2.0, 1.0)]:
        _, ts = env.step(jax.random.PRNGKey(0), state, jnp.array([[a1], [a2]]))
        assert float(ts.reward) == pytest.approx(np.clip(a1, -1, 1) * np.clip(a2, -1, 1))


def test_autoreset_keeps_final_timestep():
    env = make("mpe/simple_spread")
    state, ts = env.reset(jax.random.PRNGKey(0))
    a = jnp.zeros((3, 5))
    for t in range(25):
        prev_state = state
        state, final, nxt = step_autoreset(env, jax.random.PRNGKey(t), state, a)
    assert bool(final.truncated)
    # the final obs is the 25th step's, not the reset one
    _, direct = env.step(jax.random.split(jax.random.PRNGKey(24))[0], prev_state, a)
    np.testing.assert_array_equal(np.asarray(final.obs), np.asarray(direct.obs))
    assert not bool(nxt.done) and int(state[1]) == 0
