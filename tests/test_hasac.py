"""HASAC's update: the sequential scheme of Eq. 10 and the shape of a step."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meharl.algorithms.hasac import HASAC, Batch, default_target_entropy
from meharl.config import resolve
from meharl.envs import make

B = 32


def _setup(env_name="mpe/simple_speaker_listener", **overrides):
    cfg = resolve({"env": env_name, "hidden_sizes": "16,16", "batch_size": B, **overrides})
    env = make(env_name)
    algo = HASAC(env.spec, cfg, total_updates=10)
    return env, cfg, algo, algo.init(jax.random.PRNGKey(0))


def _batch(spec, key):
    ks = jax.random.split(key, 4)
    n, O, A = spec.n_agents, spec.max_obs_dim, spec.max_action_dim
    obs = jax.random.normal(ks[0], (B, n, O)) * jnp.asarray(spec.obs_mask)
    state = jax.random.normal(ks[1], (B, spec.state_dim))
    act = jnp.tanh(jax.random.normal(ks[2], (B, n, A))) * jnp.asarray(spec.action_dim_mask)
    ones = jnp.ones((B, n, A))
    return Batch(obs, state, act, ones, jnp.ones((B, n)), jax.random.normal(ks[3], (B,)), jnp.full((B,), 0.9),
                 obs, state, ones, jnp.ones((B, n)))


@pytest.fixture(scope="module")
def hetero():
    env, cfg, algo, ts = _setup()
    return env, cfg, algo, ts, _batch(env.spec, jax.random.PRNGKey(1))


def test_permutation_changes_between_updates(hetero):
    algo = hetero[2]
    env3 = make("mpe/simple_spread")
    algo3 = HASAC(env3.spec, algo.cfg, 10)
    ts3 = algo3.init(jax.random.PRNGKey(0))
    batch3 = _batch(env3.spec, jax.random.PRNGKey(2))
    improve = jax.jit(lambda k: algo3.improve_actors(ts3, ts3.critic_params, ts3.value_norm, batch3, k)[-1]["perm"])
    perms = {tuple(np.asarray(improve(jax.random.PRNGKey(k)))) for k in range(30)}
    assert all(sorted(p) == [0, 1, 2] for p in perms)
    assert len(perms) >= 4, perms  # 6 orders exist; 30 draws hit at least 4 w.p. > 0.999
    fixed = HASAC(env3.spec, algo.cfg.replace(fixed_order=True), 10)
    fixed_perms = {tuple(np.asarray(fixed.improve_actors(ts3, ts3.critic_params, ts3.value_norm, batch3, jax.random.PRNGKey(k))[-1]["perm"])) for k in range(5)}
    assert fixed_perms == {(0, 1, 2)}


@pytest.fixture(scope="module")
def spread(hetero):
    """Three homogeneous agents (simple_spread) with the small networks of ``hetero``."""
    spec = make("mpe/simple_spread").spec
    algo = HASAC(spec, hetero[1], 10)
    return spec, algo, algo.init(jax.random.PRNGKey(0)), _batch(spec, jax.random.PRNGKey(3))


def test_updated_agents_play_their_resampled_actions(spread):
    spec, algo, ts, batch = spread
    new_params, _, _, _, _, _, trace = jax.jit(lambda k: algo.improve_actors(ts, ts.critic_params, ts.value_norm, batch, k))(jax.random.PRNGKey(5))
    perm = np.asarray(trace["perm"])
    pre, seen = np.asarray(trace["pre_actions"]), np.asarray(trace["seen"])
    for m in range(spec.n_agents):
        for j, agent in enumerate(perm):
            if j < m:
                # already updated in this pass: a fresh sample of its *new* policy
                p = jax.tree.map(lambda x: x[agent], new_params)
                a, _ = algo._sample_agent(p, agent, batch.obs[:, agent], batch.action_mask[:, agent], trace["resample_keys"][j])
                np.testing.assert_allclose(seen[m][:, agent], np.asarray(a), rtol=1e-5, atol=1e-6)
                assert not np.allclose(seen[m][:, agent], pre[:, agent])
            else:
                # not yet updated: its pre-update action
                np.testing.assert_array_equal(seen[m][:, agent], pre[:, agent])


def test_actor_pass_reuses_the_pre_update_forward_passes(spread):
    """The compiled actor pass runs 2n - 1 actor forward passes on the batch, as the reference
    update (../shared/bench/ref_hasac_update.py): each agent's loss shares the forward pass its
    pre-update action was sampled with (n), plus the resamples of all but the last agent (n - 1).
    Counted as the matmuls producing the actor head [B, 2A] in the optimised program (the
    backward pass's matmuls have other shapes); reading an agent's parameters from the loop's
    carry instead made XLA recompute them (7 for 3 agents, ~10% of the update on a CPU)."""
    spec, algo, ts, batch = spread
    improve = jax.jit(lambda k: algo.improve_actors(ts, ts.critic_params, ts.value_norm, batch, k)[:4])
    hlo = improve.lower(jax.random.PRNGKey(0)).compile().as_text()
    heads = re.findall(rf"= f32\[{B},{2 * spec.max_action_dim}\]\S* dot\(", hlo)
    assert len(heads) == 2 * spec.n_agents - 1, len(heads)


def test_update_step_runs_and_changes_parameters(hetero):
    env, cfg, algo, ts, batch = hetero
    new, metrics = jax.jit(algo.update)(ts, batch, jax.random.PRNGKey(0))
    for k in ("critic_loss", "actor_loss", "q_mean"):
        assert np.isfinite(float(metrics[k]))
    assert metrics["alpha"].shape == (2,) and metrics["entropy"].shape == (2,)
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), new.actor_params, ts.actor_params)
    assert max(jax.tree.leaves(moved)) > 0
    # Polyak: target moved by exactly tau of the way to the new critic
    tgt = jax.tree.leaves(new.target_params)[0]
    expect = (1 - cfg.polyak) * jax.tree.leaves(ts.target_params)[0] + cfg.polyak * jax.tree.leaves(new.critic_params)[0]
    np.testing.assert_allclose(tgt, expect, rtol=1e-5, atol=1e-7)


def test_averaged_actor_is_a_polyak_average_that_evaluation_plays():
    env, cfg, algo, ts = _setup(actor_polyak=0.25)
    assert jax.tree.leaves(ts.avg_actor_params)  # starts as the initial actor
    batch = _batch(env.spec, jax.random.PRNGKey(1))
    update = jax.jit(algo.update)
    new, _ = update(ts, batch, jax.random.PRNGKey(0))
    new, _ = update(new, batch, jax.random.PRNGKey(1))
    # two updates: avg_2 = 0.75 avg_1 + 0.25 theta_2, avg_1 = 0.75 theta_0 + 0.25 theta_1; recompute
    # from the online actors of the two updates (the same keys give the same online actors)
    first, _ = update(ts, batch, jax.random.PRNGKey(0))
    expect = jax.tree.map(lambda t0, t1, t2: 0.75 * (0.75 * t0 + 0.25 * t1) + 0.25 * t2,
                          ts.actor_params, first.actor_params, new.actor_params)
    for got, want in zip(jax.tree.leaves(new.avg_actor_params), jax.tree.leaves(expect)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    # act(averaged=True) plays the average, act() the online actor; they differ after updates
    obs = jax.random.normal(jax.random.PRNGKey(2), (B, env.spec.n_agents, env.spec.max_obs_dim))
    mask = jnp.ones((B, env.spec.n_agents, env.spec.max_action_dim))
    key = jax.random.PRNGKey(3)
    averaged = algo.act(new, obs, mask, key, deterministic=True, averaged=True)
    np.testing.assert_allclose(averaged, algo.sample_all(new.avg_actor_params, obs, mask, key, True)[0])
    assert float(jnp.abs(averaged - algo.act(new, obs, mask, key, deterministic=True)).max()) > 0
    # without actor_polyak there is no average: no extra leaves (older checkpoints still load)
    # and averaged=True plays the online actor
    _, _, plain_algo, plain = _setup()
    assert plain.avg_actor_params is None
    assert len(jax.tree.leaves(plain)) == len(jax.tree.leaves(ts)) - len(jax.tree.leaves(ts.avg_actor_params))
    np.testing.assert_array_equal(plain_algo.act(plain, obs, mask, key, True, averaged=True),
                                  plain_algo.act(plain, obs, mask, key, True))
    with pytest.raises(ValueError, match="actor_polyak=0.0"):
        resolve({"actor_polyak": 0.0})


def test_initial_temperature_is_honoured():
    _, _, algo, ts = _setup(alpha=0.37)
    np.testing.assert_allclose(np.exp(np.asarray(ts.log_alpha)), 0.37, rtol=1e-6)


def test_target_entropy_defaults():
    spec = make("mpe/simple_speaker_listener_discrete").spec
    cfg = resolve({"env": "mpe/simple_speaker_listener_discrete"})
    np.testing.assert_allclose(default_target_entropy(spec, cfg), 0.98 * np.log([3, 5]), rtol=1e-6)
    cfg0 = resolve({"env": "mpe/simple_speaker_listener_discrete", "discrete_target_entropy_ratio": 0})
    np.testing.assert_array_equal(default_target_entropy(spec, cfg0), [0.0, 0.0])  # the reference code's value
    cont = make("mpe/simple_speaker_listener").spec
    np.testing.assert_array_equal(default_target_entropy(cont, resolve({})), [-3.0, -5.0])


def test_per_state_target_entropy_counts_the_available_actions():
    # speaker 3 actions, listener 5 (padded to 5): with everything available the per-state
    # target is the action-space one; with 2 of the listener's 5 available it is ratio * log 2
    _, cfg, algo, _ = _setup("mpe/simple_speaker_listener_discrete", discrete_target_entropy_over="available",
                             discrete_target_entropy_ratio=0.5)
    mask = np.ones((2, 2, 5), np.float32)
    mask[1, 1] = [0, 1, 0, 1, 0]
    np.testing.assert_allclose(algo.target_entropies(jnp.asarray(mask)),
                               0.5 * np.log([[3, 5], [3, 2]]), rtol=1e-6)
    with pytest.raises(ValueError, match="action_space, available"):
        resolve({"discrete_target_entropy_over": "legal"})
    # where it cannot act it is refused rather than silently ignored
    with pytest.raises(ValueError, match="continuous"):
        _setup("mpe/simple_spread", discrete_target_entropy_over="available")
    with pytest.raises(ValueError, match="target_entropy=-1.0 overrides"):
        _setup("mpe/simple_speaker_listener_discrete", discrete_target_entropy_over="available", target_entropy=-1.0)


def test_annealed_target_entropy_moves_the_temperature_the_other_way_at_the_end():
    # ratio 2 -> 0 over the 10 updates _setup plans: at the first update every target is
    # 2 log |A_i(s)|, above any reachable entropy, so the temperature rises; at the last it is
    # 0, below the near-uniform initial policy's entropy, so it falls (Appendix H.1's J(alpha))
    env, _, algo, ts = _setup("mpe/simple_speaker_listener_discrete", discrete_target_entropy_over="available",
                              discrete_target_entropy_ratio=2.0, discrete_target_entropy_ratio_final=0.0)
    mask = jnp.ones((2, 2, 5))
    for updates, ratio in ((0, 2.0), (5, 1.0), (10, 0.0), (20, 0.0)):
        np.testing.assert_allclose(algo.target_entropies(mask, updates), ratio * np.log([[3, 5]] * 2), rtol=1e-6)
    batch = _batch(env.spec, jax.random.PRNGKey(0))
    update = jax.jit(algo.update)
    first, _ = update(ts, batch, jax.random.PRNGKey(1))
    last, _ = update(ts._replace(updates=jnp.asarray(10, jnp.int32)), batch, jax.random.PRNGKey(1))
    assert np.all(np.asarray(first.log_alpha) > np.asarray(ts.log_alpha))
    assert np.all(np.asarray(last.log_alpha) < np.asarray(ts.log_alpha))
    # the action-space target anneals too; where no discrete target applies it is refused
    _, _, algo_a, _ = _setup("mpe/simple_speaker_listener_discrete", discrete_target_entropy_ratio_final=0.5)
    np.testing.assert_allclose(algo_a.target_entropies(mask, 10), 0.5 * np.log([[3, 5]] * 2), rtol=1e-6)
    with pytest.raises(ValueError, match="discrete_target_entropy_ratio_final=0.1 has no effect.*continuous"):
        _setup("mpe/simple_spread", discrete_target_entropy_ratio_final=0.1)
    with pytest.raises(ValueError, match="invalid discrete_target_entropy_ratio_final=-0.1: must be >= 0"):
        resolve({"discrete_target_entropy_ratio_final": -0.1})


def test_share_param_refused_for_heterogeneous_agents():
    with pytest.raises(ValueError, match="share_param"):
        _setup(share_param=True)


def test_share_param_uses_one_network():
    env, cfg, algo, ts = _setup("mpe/simple_spread", share_param=True)
    assert jax.tree.leaves(ts.actor_params)[0].shape[0] == 1
    new, _ = jax.jit(algo.update)(ts, _batch(env.spec, jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
    assert jax.tree.leaves(new.actor_params)[0].shape[0] == 1


@pytest.mark.parametrize("env_name, overrides", [
    ("mpe/simple_speaker_listener_discrete", {"discrete_actor_gradient": "gumbel", "feature_norm": True}),
    ("mpe/simple_speaker_listener_discrete", {"discrete_actor_gradient": "exact"}),
    ("mpe/simple_speaker_listener", {"value_norm": True, "critic_loss": "huber", "temperature": "shared", "lr_decay": True,
                                     "mini_epochs": 2, "critic_layer_norm": True}),
])
def test_options_give_finite_updates_that_move_the_policy(env_name, overrides):
    env, cfg, algo, ts = _setup(env_name, **overrides)
    spec = env.spec
    batch = _batch(spec, jax.random.PRNGKey(4))
    if spec.discrete:  # stored actions are one-hots of real choices
        idx = jax.random.randint(jax.random.PRNGKey(5), (B, spec.n_agents), 0, 3)
        batch = batch._replace(action=jax.nn.one_hot(idx, spec.max_action_dim))
    update = jax.jit(algo.update)
    new, metrics = update(ts, batch, jax.random.PRNGKey(0))
    new, metrics = update(new, batch, jax.random.PRNGKey(1))
    assert all(np.all(np.isfinite(np.asarray(v))) for v in metrics.values()), metrics
    moved = max(jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), new.actor_params, ts.actor_params)))
    assert moved > 0
    if overrides.get("temperature") == "shared":
        assert new.log_alpha.shape == (1,) and float(new.log_alpha[0]) != float(ts.log_alpha[0])
    if overrides.get("value_norm"):
        assert float(new.value_norm.debias) > 0
    assert ("LayerNorm_0" in new.critic_params["params"]["MLP_0"]) == bool(overrides.get("critic_layer_norm"))


def test_initial_policy_writes_the_output_layer_with_ten_or_more_hidden_layers():
    """The output layer is the Dense of the highest index, not the last name in string order
    ("Dense_9" > "Dense_10"): with 11 hidden layers the policy starts exactly at init_policy."""
    env = make("matrix/hasac_3x3")
    cfg = resolve({"env": "matrix/hasac_3x3", "hidden_sizes": ",".join(["4"] * 11)})
    algo = HASAC(env.spec, cfg, 10)
    ts = algo.init(jax.random.PRNGKey(0))
    p = algo.policy_probs(ts, jnp.ones((2, 1)), jnp.ones((2, 3)))
    np.testing.assert_allclose(p, [[0.6, 0.2, 0.2]] * 2, rtol=1e-5)


def test_shared_and_per_agent_temperatures_average_over_the_alive_agents():
    """One normalisation for both temperatures: Appendix H.1's gradient averaged over the alive
    (sample, agent) pairs. Read from Adam's first moment after one step, mu = (1 - b1) g: with
    6 alive pairs in a batch of 4 the shared gradient is the sum over them / 6 (the batch-size
    normalisation this replaced gave / 4), and dead pairs' values do not enter."""
    env = make("smax/3m")
    algo = HASAC(env.spec, resolve({"env": "smax/3m", "hidden_sizes": "8", "temperature": "shared"}), 10)
    ts = algo.init(jax.random.PRNGKey(0))
    logp = -jnp.arange(12.0).reshape(4, 3) / 10
    target = jnp.full((4, 3), 0.5)
    alive = jnp.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 1]], jnp.float32)
    alive_pairs = [(0, 0), (1, 0), (1, 1), (3, 0), (3, 2)]
    alive = alive.at[2, 2].set(1.0)
    alive_pairs.append((2, 2))
    g = -sum(float(logp[b, i]) + 0.5 for b, i in alive_pairs) / len(alive_pairs)
    for poisoned in (logp, jnp.where(alive > 0, logp, 1e3)):
        _, opt = algo._temperature_step(ts.log_alpha, ts.alpha_opt, 0, poisoned, target, alive)
        assert float(opt[0].mu[0]) == pytest.approx(0.1 * g, rel=1e-5)
    # per agent: agent 0's temperature averages over agent 0's alive samples (rows 0, 1, 3)
    per_agent = HASAC(env.spec, resolve({"env": "smax/3m", "hidden_sizes": "8"}), 10)
    ts = per_agent.init(jax.random.PRNGKey(0))
    _, opt = per_agent._temperature_step(ts.log_alpha, ts.alpha_opt, 0, logp[:, 0], target[:, 0], alive[:, 0])
    assert float(opt[0].mu[0]) == pytest.approx(-0.1 * (float(logp[0, 0] + logp[1, 0] + logp[3, 0]) / 3 + 0.5), rel=1e-5)


def test_value_norm_actor_option_hands_the_actors_the_reference_s_normalised_q():
    """With value_norm the critics learn normalised targets. The default de-normalises the Q
    the actors maximise (the paper's objective); value_norm_actor=normalized keeps it
    normalised, as the reference's get_values does. The soft target is de-normalised either way."""
    from meharl.algorithms.base import ValueNorm

    env = make("mpe/simple_spread")
    batch = _batch(env.spec, jax.random.PRNGKey(4))
    norm = ValueNorm.create().update(jnp.array([5.0, 9.0]))  # mean 7, std 2
    for choice, scaled in (("denormalized", True), ("normalized", False)):
        algo = HASAC(env.spec, resolve({"env": "mpe/simple_spread", "hidden_sizes": "8", "value_norm": "true",
                                        "value_norm_actor": choice}), 10)
        ts = algo.init(jax.random.PRNGKey(0))
        raw = algo.critic(ts.critic_params, batch.state, batch.action)
        actor_q = algo._q(ts.critic_params, batch.state, batch.action, norm, for_actor=True)
        np.testing.assert_allclose(actor_q, raw * 2.0 + 7.0 if scaled else raw, rtol=1e-5)
        np.testing.assert_allclose(algo._q(ts.critic_params, batch.state, batch.action, norm), raw * 2.0 + 7.0, rtol=1e-5)
