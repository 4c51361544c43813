"""Google Research Football: the reference-style global state (always), and the adapter's
conventions where gfootball is installed (it builds from source; CI does not build it)."""
import importlib.util

import numpy as np
import pytest

from meharl.envs import FOOTBALL_SCENARIOS, make
from meharl.envs.football import SCENARIOS, global_state


def _raw(n_left, n_right, actives):
    rng = np.random.default_rng(0)
    common = {"left_team": rng.normal(size=(n_left, 2)), "left_team_direction": rng.normal(size=(n_left, 2)),
              "right_team": rng.normal(size=(n_right, 2)), "right_team_direction": rng.normal(size=(n_right, 2)),
              "ball": [0.1, 0.2, 0.3], "ball_direction": [0.0, -0.1, 0.0], "ball_owned_team": 0, "game_mode": 2}
    return [{**common, "active": a} for a in actives]


def test_global_state_is_the_shared_part_once_then_each_players_active_one_hot():
    raw = _raw(4, 2, actives=[1, 2, 3])
    s = global_state(raw)
    assert s.shape == (115 + 2 * 11,)  # Simple115 plus one more 11-slot "active" part per extra player
    np.testing.assert_allclose(s[:8], np.ravel(raw[0]["left_team"]), rtol=1e-6)
    assert np.all(s[8:22] == -1)  # missing left players are backfilled with -1
    np.testing.assert_allclose(s[88:91], [0.1, 0.2, 0.3], rtol=1e-6)
    assert s[94:97].tolist() == [0, 1, 0]  # the left team owns the ball
    assert s[97:104].tolist() == [0, 0, 1, 0, 0, 0, 0]  # game mode 2
    for k, a in enumerate([1, 2, 3]):
        part = s[104 + 11 * k: 115 + 11 * k]
        assert part.sum() == 1 and part[a] == 1


def test_registry_has_the_papers_scenarios():
    assert set(FOOTBALL_SCENARIOS) == set(SCENARIOS)


@pytest.mark.skipif(importlib.util.find_spec("gfootball") is not None, reason="gfootball is installed")
def test_missing_football_names_the_install_recipe():
    with pytest.raises(ModuleNotFoundError, match="--no-build-isolation gfootball"):
        make("football/academy_3_vs_1_with_keeper")


@pytest.mark.skipif(importlib.util.find_spec("gfootball") is None,
                    reason="Google Research Football builds from source (README recipe); not installed here")
def test_football_adapter_conventions():
    env = make("football/academy_3_vs_1_with_keeper")()
    spec = env.env_spec
    assert spec.n_agents == 3 and spec.discrete and spec.agents[0].obs_dim == 115
    assert spec.state_dim == 115 + 2 * 11

    def episode(seed, action):
        obs, _ = env.reset(seed=seed)
        assert env.observation_space.contains(obs)
        for t in range(1, spec.max_steps + 1):
            obs, reward, terminated, truncated, _ = env.step(np.full(3, action))
            assert env.observation_space.contains(obs) and np.isfinite(reward)
            if terminated or truncated:
                return t, terminated, truncated, bool(obs["won"][0])
        raise AssertionError("no episode end within max_steps")

    # Standing still (action 0, idle): the defender takes the ball (a termination) or the clock
    # runs out (a truncation after exactly max_steps). GRF's engine is not reproducible from
    # the seed; about half of such episodes run out of time, so 12 give one with p > 0.999.
    outcomes = [episode(seed, 0) for seed in range(12)]
    for t, terminated, truncated, won in outcomes:
        assert terminated != truncated and not won
        assert truncated == (t == spec.max_steps)
    assert any(truncated for _, _, truncated, _ in outcomes), outcomes


def test_football_goal_is_a_won_termination():
    # the step logic on GRF's (old gym) step results: a goal ends the episode, won
    from meharl.envs.football import FootballJointEnv

    class FakeGRF:
        def step(self, action):
            return np.zeros((3, 115)), np.array([1.1, 1.1, 1.1]), True, {"score_reward": 1}

    env = FootballJointEnv.__new__(FootballJointEnv)
    env.env, env.n_actions, env.t = FakeGRF(), 19, 5
    env.env_spec = type("Spec", (), {"max_steps": 401})()
    env._state = lambda: np.zeros(137, np.float32)
    obs, reward, terminated, truncated, _ = env.step(np.zeros(3, int))
    assert terminated and not truncated and obs["won"][0] == 1 and reward == pytest.approx(1.1)


@pytest.mark.skipif(importlib.util.find_spec("gfootball") is None,
                    reason="Google Research Football builds from source (README recipe); not installed here")
def test_football_smoke_run(tmp_path):
    from meharl.config import resolve
    from meharl.experiment import Experiment

    cfg = resolve({"env": "football/academy_3_vs_1_with_keeper", "hidden_sizes": "16,16", "n_envs": 2,
                   "warmup_steps": 100, "train_interval": 5, "batch_size": 32, "buffer_size": 2000, "n_step": 3,
                   "eval_interval": 100, "total_steps": 200, "eval_episodes": 2, "vector_env": "async"})
    rows = Experiment(cfg, tmp_path / "run", quiet=True).run()
    assert [r["env_steps"] for r in rows] == [0, 200]
    assert np.isfinite(rows[-1]["critic_loss"]) and 0 <= rows[-1]["eval_win_rate"] <= 1
