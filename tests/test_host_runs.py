"""Training on host-stepped environments (Gymnasium vector envs) and on SMAX: tiny smoke runs
per family, resume, and the same numbers as the JAX MPE for the same policy."""
import json

import jax
import numpy as np
import pytest

from meharl.config import resolve
from meharl.cli import main
from meharl.experiment import Experiment, evaluate_run

pytest.importorskip("mpe2", reason="mpe2 is a test extra: pip install -e .[test]")

TINY = dict(hidden_sizes="16,16", n_envs=2, warmup_steps=100, train_interval=5, update_per_train=1, batch_size=32,
            buffer_size=2000, n_step=3, eval_interval=100, total_steps=400, eval_episodes=3, checkpoint_every=1)


def _finite_rows(rows):
    for r in (r for r in rows if r["env_steps"] > 0):  # step 0 evaluates the initial policy only
        for k in ("eval_return_mean", "critic_loss", "actor_loss", "alpha", "entropy", "q_mean"):
            assert np.isfinite(r[k]), (k, r)


def test_pz_mpe_evaluates_the_same_policy_like_the_jax_mpe():
    # Same seed -> same initial actor parameters on both runners; the deterministic initial policy
    # is evaluated on 40 episodes from independent initial positions on each. The two means must
    # agree within sampling error: 4 standard errors of the difference.
    returns, params = {}, {}
    for env in ("mpe/simple_spread", "pz_mpe/simple_spread"):
        exp = Experiment(resolve({**TINY, "env": env, "seeds": "0", "eval_episodes": 40, "vector_env": "sync"}),
                         "/tmp/unused", quiet=True)
        rs = exp.loop.init(exp.seed_keys())
        returns[env] = np.asarray(exp.loop.evaluate(rs.algo, exp.eval_keys(0))[0])[0]
        params[env] = rs.algo.actor_params
        exp.runner.close()
    for a, b in zip(jax.tree.leaves(params["mpe/simple_spread"]), jax.tree.leaves(params["pz_mpe/simple_spread"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    jax_r, pz_r = returns.values()
    se = np.sqrt(jax_r.var() / len(jax_r) + pz_r.var() / len(pz_r))
    assert abs(jax_r.mean() - pz_r.mean()) < 4 * se, (jax_r.mean(), pz_r.mean(), se)
    assert -120 < pz_r.mean() < -30  # the scale of simple_spread returns (README)


@pytest.mark.slow
def test_host_run_trains_writes_outputs_and_resumes(tmp_path, interrupt_after_second_checkpoint):
    cfg = resolve({**TINY, "env": "pz_mpe/simple_speaker_listener", "seeds": "0,1", "vector_env": "sync"})
    first = Experiment(cfg, tmp_path / "run", quiet=True)
    interrupt_after_second_checkpoint(first)
    exp = Experiment(cfg, tmp_path / "run", quiet=True)
    loaded, progress = exp.load_checkpoint()
    # the learner, replay and keys come back exactly; the host envs restart their episodes
    for a, b in zip(jax.tree.leaves(first.saved_state.algo), jax.tree.leaves(loaded.algo)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(first.saved_state.buffer.experience.obs),
                                  np.asarray(loaded.buffer.experience.obs))
    rows = exp.run()
    assert sorted({r["env_steps"] for r in rows}) == [0, 200, 300, 400]
    assert {r["seed"] for r in rows} == {0, 1}
    _finite_rows(rows)
    for name in ("config.yaml", "metrics.csv", "marl_eval.json", "learning_curve.png", "checkpoint.npz"):
        assert (tmp_path / "run" / name).exists(), name


@pytest.mark.slow
def test_mamujoco_smoke_in_worker_processes(tmp_path):
    pytest.importorskip("gymnasium_robotics", reason="Multi-Agent MuJoCo is a test extra: pip install -e .[test]")
    cfg = resolve({**TINY, "env": "mamujoco/HalfCheetah-2x3", "seeds": "0", "eval_episodes": 2, "total_steps": 300,
                   "vector_env": "async"})
    exp = Experiment(cfg, tmp_path / "run", quiet=True)
    rows = exp.run()
    assert [r["env_steps"] for r in rows] == [0, 200, 300]
    _finite_rows(rows)
    assert len(rows[-1]["eval_returns"]) == 2
    assert exp.runner._vec == {}  # the worker processes were shut down


@pytest.mark.slow
def test_smax_smoke_reports_win_rate(tmp_path, capfd):
    cfg = resolve({**TINY, "env": "smax/3m", "seeds": "0", "total_steps": 300, "eval_episodes": 4})
    rows = Experiment(cfg, tmp_path / "run", quiet=True).run()
    _finite_rows(rows)
    assert all(0.0 <= r["eval_win_rate"] <= 1.0 for r in rows)
    assert cfg.critic_loss == "huber" and cfg.value_norm  # the SMAC preset
    # `meharl eval` reports the win rate of battles too, from the same episodes as the returns
    per_seed, _ = evaluate_run(tmp_path / "run", 5)
    returns, won = per_seed[0]
    assert returns.shape == won.shape == (5,) and won.dtype == bool
    assert main(["eval", str(tmp_path / "run"), "--episodes", "5"]) == 0
    out = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert out["eval_win_rate"] == {"0": float(won.mean())}  # evaluation is deterministic given the run
    assert out["eval_return"]["0"]["mean"] == pytest.approx(float(returns.mean()))


def test_a_registered_pettingzoo_env_trains_by_name(tmp_path):
    # the README's recipe for your own PettingZoo env: simple_spread with 2 agents
    from functools import partial

    from mpe2 import simple_spread_v3

    from meharl.envs import register
    from meharl.envs.host import JointEnv
    from meharl.experiment import train

    register("mine/spread2", partial(JointEnv, partial(simple_spread_v3.parallel_env, N=2, max_cycles=10,
                                                       continuous_actions=False), "mine/spread2",
                                     team_reward="sum", state="env"))
    exp = train({**TINY, "env": "mine/spread2", "seeds": "0", "vector_env": "sync", "total_steps": 200},
                run_dir=tmp_path / "run", quiet=True)
    assert exp.runner.spec.n_agents == 2 and exp.runner.spec.discrete
    _finite_rows(exp.rows)
    with pytest.raises(ValueError, match="unknown env 'mine/spread3'.*mine/spread2"):
        train({"env": "mine/spread3"})


ON_TINY = dict(hidden_sizes="16,16", n_envs=2, episode_length=25, eval_interval=50, total_steps=150, eval_episodes=3,
               checkpoint_every=1)


@pytest.mark.parametrize("algo", ["happo", "mappo"])
def test_on_policy_host_run_trains_and_resumes(tmp_path, interrupt_after_second_checkpoint, algo):
    """The on-policy learner with host-stepped envs (mpe2): trains, checkpoints, and resumes with
    the learner state exact (the host envs restart their episodes, as off-policy). The driver
    does not depend on the algorithm: HAPPO (per-agent, sequential) and MAPPO (shared, pooled)."""
    cfg = resolve({**ON_TINY, "algo": algo, "env": "pz_mpe/simple_spread_discrete", "seeds": "0,1", "vector_env": "sync"})
    first = Experiment(cfg, tmp_path / "run", quiet=True)
    interrupt_after_second_checkpoint(first)
    exp = Experiment(cfg, tmp_path / "run", quiet=True)
    loaded, _ = exp.load_checkpoint()
    for a, b in zip(jax.tree.leaves(first.saved_state.algo), jax.tree.leaves(loaded.algo)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    rows = exp.run()
    assert sorted({r["env_steps"] for r in rows}) == [0, 50, 100, 150]
    for r in (r for r in rows if r["env_steps"] > 0):
        assert all(np.isfinite(r[k]) for k in exp.runner.algo.metrics), r


def test_on_policy_mamujoco_smoke_in_worker_processes(tmp_path):
    pytest.importorskip("gymnasium_robotics", reason="Multi-Agent MuJoCo is a test extra: pip install -e .[test]")
    cfg = resolve({**ON_TINY, "algo": "happo", "env": "mamujoco/HalfCheetah-2x3", "seeds": "0", "eval_episodes": 2,
                   "total_steps": 100, "vector_env": "async"})
    exp = Experiment(cfg, tmp_path / "run", quiet=True)
    rows = exp.run()
    assert [r["env_steps"] for r in rows] == [0, 50, 100]
    assert all(np.isfinite(r["value_loss"]) for r in rows[1:])
    assert len(rows[-1]["eval_returns"]) == 2
    assert exp.runner._vec == {}
