"""ADER (Kim & Sung, ICML 2023): the adaptive per-agent target entropies, as HASAC's option
on continuous tasks (``ader=true``) and as the value-based ``algo=ader``."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meharl.buffer import Batch
from meharl.config import resolve
from meharl.experiment import build, train


def test_the_metric_is_the_derivative_of_the_value_in_each_agents_entropy():
    """value_entropy_gradient (autodiff through the widened Gaussians) against central
    differences of the same V(delta) with the same noise: V is E_{a~pi}[min_j Q_j(s, a)]
    with agent i's log sigma raised by delta_i / dim A_i."""
    _, runner = build(resolve({"algo": "hasac", "env": "mpe/simple_spread", "hidden_sizes": (16,), "ader": True}))
    algo, spec = runner.algo, runner.algo.spec
    state = algo.init(jax.random.PRNGKey(0))
    k_obs, k_state, k_noise = jax.random.split(jax.random.PRNGKey(1), 3)
    B = 64
    batch = Batch(obs=jax.random.normal(k_obs, (B, algo.n, spec.max_obs_dim)),
                  state=jax.random.normal(k_state, (B, spec.state_dim)),
                  action=None, action_mask=jnp.ones((B, algo.n, spec.max_action_dim)), reward=None, discount=None,
                  next_obs=None, next_state=None, next_action_mask=None, alive=jnp.ones((B, algo.n)), next_alive=None)
    grad = algo.value_entropy_gradient(state.actor_params, state.critic_params, state.value_norm, batch, k_noise)

    def value(delta):  # the same joint sample as value_entropy_gradient, by hand
        from meharl.networks import tanh_gaussian_sample
        keys = jax.random.split(k_noise, algo.n)
        joint = jnp.stack([tanh_gaussian_sample(algo._agent_out(algo.slots.get(state.actor_params, i), i, batch.obs[:, i]),
                                                algo.dim_mask[i], keys[i], log_std_shift=delta[i] / algo.dim_mask[i].sum())[0]
                           for i in range(algo.n)], -2)
        return algo._q(state.critic_params, batch.state, joint, state.value_norm).min(0).mean()

    h = 1e-2
    numeric = [(value(h * e) - value(-h * e)) / (2 * h) for e in np.eye(algo.n)]
    np.testing.assert_allclose(grad, numeric, rtol=1e-2, atol=1e-5)


def test_ader_refuses_what_it_cannot_adapt_before_compiling():
    with pytest.raises(ValueError, match="ader=true needs continuous agents.*algo=ader"):
        build(resolve({"algo": "hasac", "env": "matrix/hasac_3x3", "ader": True}))
    with pytest.raises(ValueError, match="ader=true needs continuous agents.*auto_alpha=False"):
        build(resolve({"algo": "hasac", "env": "matrix/ader_path", "ader": True, "auto_alpha": False}))


@pytest.mark.slow
def test_ader_target_entropies_swap_between_the_agents_at_the_junction_of_the_path_game(tmp_path):
    """ADER's Figure 2(b): on the path game agent 1 (x) must first walk to the junction (0.6, 0)
    while agent 2 (y) keeps still, then agent 2 walks up to the circle while agent 1 keeps
    still; ADER's target entropies follow: H_1 > H_2 before the junction, H_2 > H_1 after.
    The paper's settings (H_0 = -2, xi 0.9, softmax temperature 1, alpha_init e^-2; the path-game
    preset), five seeds, a row every 1000 steps: in every row the greedy position is before the
    junction (return < 2.5, the reward there) exactly when H_1 > H_2, and every seed passes the
    junction within 6000 steps (measured: the crossing at 3.5k-4.5k; docs/algorithms/ader.md)."""
    exp = train({"algo": "hasac", "env": "matrix/ader_path", "ader": True, "seeds": tuple(range(5)),
                 "total_steps": 6_000, "eval_interval": 1_000}, run_dir=tmp_path, quiet=True)
    rows = [r for r in exp.rows if "target_entropy_0" in r]
    for seed in range(5):
        mine = [(r["eval_return_mean"], r["target_entropy_0"] - r["target_entropy_1"]) for r in rows if r["seed"] == seed]
        assert [ret < 2.5 for ret, _ in mine] == [d > 0 for _, d in mine], (seed, mine)
        assert mine[-1][0] > 2.5, (seed, mine)
