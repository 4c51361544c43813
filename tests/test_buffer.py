"""n-step targets against a brute-force reference, including episode ends and truncation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meharl.buffer import NStepReplay, Transition, nstep_return


def brute_force(rewards, terminated, done, gamma):
    ret, disc = 0.0, 1.0
    for j in range(len(rewards)):
        ret += disc * rewards[j]
        disc *= gamma
        if done[j]:
            return ret, (0.0 if terminated[j] else disc), j
    return ret, disc, len(rewards) - 1


@pytest.mark.parametrize("n", [1, 3, 7])
def test_nstep_return_matches_brute_force(n):
    rng = np.random.default_rng(n)
    B, gamma = 500, 0.9
    r = rng.normal(size=(B, n)).astype(np.float32)
    term = rng.random((B, n)) < 0.1
    trunc = (rng.random((B, n)) < 0.1) & ~term
    done = term | trunc
    ret, disc, last = nstep_return(jnp.asarray(r), jnp.asarray(term, jnp.float32), jnp.asarray(done), gamma)
    assert done.any(axis=1).sum() > 40  # windows with an end (terminated or truncated) occur
    assert n == 1 or (done.sum(1) > 1).sum() > 5  # and windows with two ends
    for b in range(B):
        e_ret, e_disc, e_last = brute_force(r[b], term[b], done[b], gamma)
        assert float(ret[b]) == pytest.approx(e_ret, rel=1e-5, abs=1e-5)
        assert float(disc[b]) == pytest.approx(e_disc, rel=1e-6)
        assert int(last[b]) == e_last


def test_sampled_batches_are_consistent_with_stored_trajectories():
    """Fill a buffer with transitions whose obs encode (env, time); every sampled n-step
    target must equal the brute force over that env's stored steps, bootstrapping from the
    stored final observation of the step where the window stops."""
    n_envs, length, n, gamma = 3, 40, 4, 0.95
    replay = NStepReplay(n_envs, n_envs * length, n, batch_size=256, gamma=gamma)
    rng = np.random.default_rng(0)
    steps = 55  # wraps around the ring
    R = rng.normal(size=(steps, n_envs)).astype(np.float32)
    term = rng.random((steps, n_envs)) < 0.08
    trunc = (rng.random((steps, n_envs)) < 0.08) & ~term

    def tr(t):
        code = np.stack([np.arange(n_envs), np.full(n_envs, t)], -1).astype(np.float32)  # (env, time)
        obs = jnp.asarray(code[:, None, :])
        return Transition(
            obs=obs, state=jnp.asarray(code), action=jnp.zeros((n_envs, 1, 1)), action_mask=jnp.ones((n_envs, 1, 1), bool),
            alive=jnp.ones((n_envs, 1), bool), reward=jnp.asarray(R[t]), terminated=jnp.asarray(term[t], jnp.float32),
            done=jnp.asarray(term[t] | trunc[t]), next_obs=obs + 1000.0, next_state=jnp.asarray(code) + 1000.0,
            next_action_mask=jnp.ones((n_envs, 1, 1), bool), next_alive=jnp.ones((n_envs, 1), bool),
        )

    state = replay.init(jax.tree.map(lambda x: x[0], tr(0)))
    for t in range(steps):
        state = replay.add(state, tr(t))
    batch = replay.sample(state, jax.random.PRNGKey(0))
    starts = set()
    for b in range(256):
        env, t0 = (int(x) for x in np.asarray(batch.state[b]))
        starts.add(t0)
        assert t0 >= steps - length, "sampled an overwritten step"
        assert t0 + n <= steps, "sampled a window crossing the write head"
        e_ret, e_disc, e_last = brute_force(R[t0:t0 + n, env], term[t0:t0 + n, env], (term | trunc)[t0:t0 + n, env], gamma)
        assert float(batch.reward[b]) == pytest.approx(e_ret, rel=1e-5, abs=1e-5)
        assert float(batch.discount[b]) == pytest.approx(e_disc, rel=1e-6)
        np.testing.assert_array_equal(np.asarray(batch.next_state[b]), [env + 1000.0, t0 + e_last + 1000.0])
    assert len(starts) > 20
