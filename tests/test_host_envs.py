"""Host-stepped environments: the joint-space Gymnasium wrapper over PettingZoo (mpe2, Multi-
Agent MuJoCo), their conventions, the vector env's same-step auto-reset, and the real-SMAC
adapter's error without StarCraft II and its conventions on a stand-in game."""
import gymnasium as gym
import numpy as np
import pytest

from meharl.envs import ENV_NAMES, MAMUJOCO_TASKS, is_host, make

pytest.importorskip("mpe2", reason="mpe2 is a test extra: pip install -e .[test]")
pytest.importorskip("gymnasium_robotics", reason="Multi-Agent MuJoCo is a test extra: pip install -e .[test]")

PZ_MPE = [n for n in ENV_NAMES if n.startswith("pz_mpe/")]
# built in by gymnasium-robotics, and each of the partitions we build (envs/mamujoco.py)
MAMUJOCO = ["mamujoco/HalfCheetah-2x3", "mamujoco/HalfCheetah-3x2", "mamujoco/Ant-8x1", "mamujoco/Walker2d-6x1",
            "mamujoco/Humanoid-17x1", "mamujoco/HumanoidStandup-17x1", "mamujoco/Hopper-3x1",
            "mamujoco/ManySegmentSwimmer-10x2"]


def _random_joint_action(env, rng):
    spec = env.env_spec
    if spec.discrete:
        return np.array([rng.integers(a.action_dim) for a in spec.agents])
    return (rng.uniform(-1, 1, (spec.n_agents, spec.max_action_dim)) * spec.action_dim_mask).astype(np.float32)


def _check_joint_obs(env, obs):
    spec = env.env_spec
    assert env.observation_space.contains(obs)
    # padding: entries beyond an agent's observation are exactly zero
    assert np.all(obs["obs"][spec.obs_mask == 0] == 0)
    assert np.all(obs["action_mask"][spec.action_dim_mask == 0] == 0)


@pytest.mark.parametrize("name", PZ_MPE + MAMUJOCO)
def test_joint_env_protocol(name):
    env = make(name)()
    spec = env.env_spec
    assert is_host(name) and spec.name == name
    obs, _ = env.reset(seed=0)
    _check_joint_obs(env, obs)
    rng = np.random.default_rng(0)
    for _ in range(30):
        obs, reward, terminated, truncated, _ = env.step(_random_joint_action(env, rng))
        _check_joint_obs(env, obs)
        assert np.isfinite(reward) and not (terminated and truncated)
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()


@pytest.mark.parametrize("name, options", [("pz_mpe/simple_speaker_listener", {}), ("mamujoco/HalfCheetah-3x2", {}),
                                           ("mamujoco/Humanoid-17x1", {}), ("mamujoco/Ant-4x2", {"obs": "reference"})])
def test_wrapped_pettingzoo_env_passes_parallel_api_test(name, options):
    from pettingzoo.test import parallel_api_test

    parallel_api_test(make(name, **options)().env, num_cycles=50)


def test_gymnasium_env_checker_accepts_the_joint_env():
    from gymnasium.utils.env_checker import check_env

    check_env(make("mamujoco/HalfCheetah-2x3")(), skip_render_check=True)


def test_pz_mpe_episode_is_25_steps_ending_in_truncation():
    env = make("pz_mpe/simple_spread")()
    env.reset(seed=0)
    for t in range(1, 26):
        obs, _, terminated, truncated, _ = env.step(np.zeros((3, 5), np.float32))
        assert truncated == (t == 25) and not terminated
    # global state = concatenation of the agents' observations
    np.testing.assert_array_equal(obs["state"], obs["obs"].reshape(-1))


def test_mamujoco_time_limit_is_a_truncation():
    env = make("mamujoco/HalfCheetah-2x3")()  # the cheetah cannot fall: every episode lasts 1000 steps
    env.reset(seed=0)
    for t in range(1, 1001):
        _, _, terminated, truncated, _ = env.step(np.zeros((2, 3), np.float32))
        assert truncated == (t == 1000) and not terminated


def test_mamujoco_fall_is_a_termination():
    env = make("mamujoco/Hopper-3x1")()
    env.reset(seed=0)
    for t in range(1, 1001):
        _, _, terminated, truncated, _ = env.step(np.ones((3, 1), np.float32))  # full torque: it falls
        if terminated or truncated:
            break
    assert terminated and not truncated and t < 1000, t


def test_mamujoco_team_reward_state_and_action_scaling():
    env = make("mamujoco/Humanoid-9|8")()
    obs, _ = env.reset(seed=0)
    pz = env.env
    # global state = the single-agent MuJoCo observation
    np.testing.assert_array_equal(obs["state"], np.asarray(pz.state(), np.float32))
    # [-1, 1] is scaled onto Humanoid's Box(-0.4, 0.4) per joint
    a = np.zeros((2, 9), np.float32)
    a[0, 0], a[1, 0] = 1.0, -0.5
    acts = env.env_actions(a)
    assert acts["agent_0"][0] == pytest.approx(0.4) and acts["agent_1"][0] == pytest.approx(-0.2)
    assert acts["agent_1"].shape == (8,)
    # every agent gets the robot's reward; the team reward is that reward, not a sum
    pz_env = make("mamujoco/Humanoid-9|8")().env
    pz_env.reset(seed=0)
    _, rewards, _, _, _ = pz_env.step(acts)
    _, team, _, _, _ = env.step(a)
    assert len(set(rewards.values())) == 1 and team == pytest.approx(next(iter(rewards.values())))


def test_mamujoco_obsk_widens_the_local_observation():
    local = make("mamujoco/HalfCheetah-6x1", obsk=0)().env_spec
    wider = make("mamujoco/HalfCheetah-6x1", obsk=1)().env_spec
    assert all(a.obs_dim < b.obs_dim for a, b in zip(local.agents, wider.agents))


def test_mamujoco_reference_observation_is_the_whole_robot():
    # HARL's mujoco_multi.py: agent i sees standardise(concat(single-agent obs, one_hot(i))),
    # the critic standardise(single-agent obs), standardise(x) = (x - mean(x)) / std(x)
    env = make("mamujoco/HalfCheetah-2x3", obs="reference")()
    assert [a.obs_dim for a in env.env_spec.agents] == [17 + 2, 17 + 2] and env.env_spec.state_dim == 17
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        obs, *_ = env.step(np.full((2, 3), 0.5, np.float32))
    robot = np.asarray(env.env.env.state(), np.float64)  # the unwrapped mamujoco env's state
    std = lambda x: (x - x.mean()) / x.std()
    for i in range(2):
        np.testing.assert_allclose(obs["obs"][i], std(np.concatenate([robot, np.eye(2)[i]])), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(obs["state"], std(robot), rtol=1e-5, atol=1e-5)
    # the same robot and the same action give the same step whatever the observation kind
    local = make("mamujoco/HalfCheetah-2x3", obs="local")()
    local.reset(seed=0)
    for _ in range(5):
        local.step(np.full((2, 3), 0.5, np.float32))
    np.testing.assert_array_equal(np.asarray(local.env.state(), np.float64), robot)
    with pytest.raises(ValueError, match="mamujoco_obs 'full'. Valid choices: local, reference"):
        make("mamujoco/HalfCheetah-2x3", obs="full")


def test_all_mamujoco_tasks_build():
    for task in MAMUJOCO_TASKS:
        spec = make(f"mamujoco/{task}")().env_spec
        expected = 2 if task == "Humanoid-9|8" else int(task.split("-")[1].split("x")[0])
        assert spec.n_agents == expected
        assert not spec.discrete and spec.max_steps == 1000


def test_vector_env_keeps_the_final_observation_of_a_truncated_episode():
    from meharl.envs.host import vector_env

    make_env = make("pz_mpe/simple_spread")
    vec = vector_env(make_env, 2, "sync")
    twin = make_env()  # the same env stepped by hand
    vec.reset(seed=[7, 8])
    twin.reset(seed=7)
    a = np.full((2, 3, 5), 0.3, np.float32)
    for t in range(25):
        obs, _, _, truncated, info = vec.step(a)
        twin_obs, *_ = twin.step(a[0])
    assert truncated.all()
    np.testing.assert_array_equal(info["final_obs"][0]["obs"], twin_obs["obs"])
    assert not np.array_equal(obs["obs"][0], twin_obs["obs"])  # the next episode's first observation


def test_pooled_vector_env_steps_as_the_sync_one_and_raises_its_workers_errors():
    """5 envs over 2 worker processes (3 + 2): the same observations, rewards, ends and final
    observations as one SyncVectorEnv, through the auto-reset at the time limit (25 steps); an
    env's exception and a worker's death are raised by the caller and close the pool."""
    from meharl.envs.host import PooledVectorEnv, vector_env

    make_env = make("pz_mpe/simple_spread")
    sync, pooled = vector_env(make_env, 5, "sync"), vector_env(make_env, 5, "async", workers=2)
    assert isinstance(pooled, PooledVectorEnv) and [len(s) for s in pooled.shares] == [3, 2]
    workers = list(pooled._processes)
    try:
        seeds = [3, 1, 4, 1, 5]
        for a, b in zip(sync.reset(seed=seeds)[0].values(), pooled.reset(seed=seeds)[0].values()):
            np.testing.assert_array_equal(a, b)
        rng, ends = np.random.default_rng(0), []
        for t in range(30):
            actions = rng.uniform(-1, 1, (5, 3, 5)).astype(np.float32)
            (o1, r1, te1, tr1, i1), (o2, r2, te2, tr2, i2) = sync.step(actions), pooled.step(actions)
            for x, y in [*((o1[k], o2[k]) for k in o1), (r1, r2), (te1, te2), (tr1, tr2)]:
                np.testing.assert_array_equal(x, y)
            assert ("_final_obs" in i1) == ("_final_obs" in i2)
            if "_final_obs" in i2:
                ends.append(t)
                np.testing.assert_array_equal(i1["_final_obs"], i2["_final_obs"])
                for i in np.flatnonzero(i2["_final_obs"]):
                    for k, v in i1["final_obs"][i].items():
                        np.testing.assert_array_equal(v, i2["final_obs"][i][k])
        assert ends == [24]  # every env's episode ended at its 25th step, and only there
        with pytest.raises(IndexError) as error:
            pooled.step(np.zeros((5, 2, 5), np.float32))  # 2 agents' actions for 3
        assert "in a host env worker process" in "".join(error.value.__notes__)
        assert pooled._pipes == [] and not any(p.is_alive() for p in workers)  # the error closed the pool

        dying = vector_env(make_env, 2, "async", workers=2)
        dying.reset(seed=[0, 1])
        dying._processes[1].kill()
        dying._processes[1].join()
        with pytest.raises(RuntimeError, match="host env worker 1 died"):
            dying.step(np.zeros((2, 3, 5), np.float32))
        assert dying._pipes == []
    finally:
        sync.close()
        pooled.close()


def test_real_smac_without_starcraft_names_what_is_missing():
    with pytest.raises((ModuleNotFoundError, FileNotFoundError), match="StarCraft II"):
        make("smac/3m")


class _FakeStarCraft2Env:
    """The parts of SMAC's StarCraft2Env API the adapter uses: 2 agents, 4 actions, a 3-step
    episode limit; agent 1 dies at step 2; ``win_at`` ends the battle won at that step."""

    def __init__(self, win_at=None):
        self.win_at, self.t = win_at, 0

    def get_env_info(self):
        return {"n_agents": 2, "n_actions": 4, "obs_shape": 3, "state_shape": 5, "episode_limit": 3}

    def reset(self):
        self.t = 0

    def step(self, actions):
        assert len(actions) == 2 and all(isinstance(a, int) for a in actions)
        self.t += 1
        if self.t == self.win_at:
            return 1.0, True, {"battle_won": True}
        if self.t == 3:
            return 0.5, True, {"battle_won": False, "episode_limit": True}
        return 0.5, False, {}

    def get_obs(self):
        return [np.full(3, self.t + i, np.float32) for i in range(2)]

    def get_state(self):
        return np.arange(5, dtype=np.float32) + self.t

    def get_avail_actions(self):
        return [[1, 1, 0, 0], [1, 0, 0, 1]]

    def get_unit_by_id(self, i):
        return type("Unit", (), {"health": 0.0 if (i == 1 and self.t >= 2) else 45.0})()

    def close(self):
        pass


@pytest.mark.parametrize("win_at", [None, 2])
def test_real_smac_adapter_conventions_on_a_stand_in_game(win_at):
    from gymnasium.utils.env_checker import check_env

    from meharl.envs.smac import StarCraftJointEnv

    env = StarCraftJointEnv(lambda: _FakeStarCraft2Env(win_at), "smac/fake")
    check_env(env, skip_render_check=True)
    obs, _ = env.reset()
    assert obs["action_mask"].tolist() == [[1, 1, 0, 0], [1, 0, 0, 1]] and obs["alive"].tolist() == [1, 1]
    _, r, term, trunc, _ = env.step(np.array([0, 3]))
    assert (r, term, trunc) == (0.5, False, False)
    obs, r, term, trunc, _ = env.step(np.array([1, 0]))
    assert obs["alive"].tolist() == [1, 0] and obs["state"].tolist() == [2, 3, 4, 5, 6]
    if win_at == 2:  # a won battle is a termination
        assert (r, term, trunc, obs["won"][0]) == (1.0, True, False, 1)
        return
    obs, r, term, trunc, _ = env.step(np.array([1, 0]))
    assert (term, trunc, obs["won"][0]) == (False, True, 0)  # SMAC's episode limit: a truncation


def test_missing_extra_is_named(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m == "gymnasium_robotics" else real(m, *a))
    with pytest.raises(ModuleNotFoundError, match=r"meharl\[mamujoco\]"):
        make("mamujoco/Ant-4x2")


def test_action_spaces():
    env = make("pz_mpe/simple_speaker_listener_discrete")()
    assert isinstance(env.action_space, gym.spaces.MultiDiscrete) and env.env_spec.discrete
    env = make("pz_mpe/simple_speaker_listener")()
    assert env.action_space.shape == (2, 5) and [a.action_dim for a in env.env_spec.agents] == [3, 5]


def test_worker_processes_do_not_import_jax():
    # what a spawned worker imports to build its env: the adapters and the pickled factory
    import subprocess
    import sys

    code = ("import pickle, sys; from meharl.envs import make; "
            "f = pickle.loads(pickle.dumps(make('mamujoco/Hopper-3x1'))); f(); "
            "f = pickle.loads(pickle.dumps(make('pz_mpe/simple_spread'))); f(); "
            "print(sorted(m for m in ('jax', 'jaxmarl', 'flax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
