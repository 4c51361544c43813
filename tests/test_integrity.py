"""Run directories that cannot be silently corrupted, runs that cost what they need, and bad
input that fails in words (issue 51)."""
import subprocess
from contextlib import nullcontext
import sys
import time

import jax
import numpy as np
import pytest

from meharl.cli import main
from meharl.config import resolve
from meharl.experiment import Experiment, run_lock

TINY = dict(env="mpe/simple_speaker_listener", hidden_sizes="16,16", n_envs=4, warmup_steps=200, train_interval=5,
            update_per_train=1, batch_size=32, buffer_size=1_000_000, n_step=3, eval_interval=100, total_steps=400,
            eval_episodes=4, seeds="0", checkpoint_every=1)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run with its checkpoint files."""
    run_dir = tmp_path_factory.mktemp("integrity") / "run"
    exp = Experiment(resolve(TINY), run_dir, quiet=True)
    exp.run()
    return run_dir, exp


def test_a_run_directory_has_one_owner_and_a_dead_owner_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, pathlib; from meharl.experiment import run_lock\n"
        f"with run_lock(pathlib.Path({str(tmp_path)!r})):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match=rf"{tmp_path} is in use by another training \(pid {holder.pid} on .* since"):
            with run_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    # the owner died without cleaning up: its lock file is still there, its lock is not
    assert f"pid {holder.pid}" in (tmp_path / ".lock").read_text()
    with run_lock(tmp_path):
        assert "pid" in (tmp_path / ".lock").read_text()


def test_a_second_training_into_a_busy_run_directory_is_refused_before_it_trains(tmp_path):
    exp = Experiment(resolve(TINY), tmp_path / "run", quiet=True)
    (tmp_path / "run").mkdir()
    with run_lock(tmp_path / "run"):
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match="in use by another training"):
            exp.run()
        assert time.perf_counter() - t0 < 5
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_the_checkpoint_is_one_file_and_the_previous_one_is_kept(finished):
    run_dir, exp = finished
    assert (run_dir / "checkpoint.npz").exists() and (run_dir / "checkpoint.prev.npz").exists()
    assert not (run_dir / "checkpoint.json").exists()
    with np.load(run_dir / "checkpoint.npz") as now, np.load(run_dir / "checkpoint.prev.npz") as before:
        import json

        assert json.loads(str(now["progress"]))["blocks_done"] > json.loads(str(before["progress"]))["blocks_done"]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing", "stale_tmp"])
def test_a_broken_checkpoint_falls_back_to_the_previous_one(finished, tmp_path, damage):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished[0], run_dir)
    ckpt = run_dir / "checkpoint.npz"
    data = ckpt.read_bytes()
    if damage == "truncated":  # a crash mid-write of a file renamed too early, or a full disk
        ckpt.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        ckpt.write_bytes(b"not a checkpoint")
    elif damage == "missing":  # a crash between the two renames of save_checkpoint
        ckpt.unlink()
    else:  # a crash while writing the next one: its temporary file is ignored
        (run_dir / "checkpoint.tmp.npz").write_bytes(data[:100])
    exp = Experiment(resolve(TINY), run_dir, quiet=True)
    with pytest.warns(UserWarning, match="checkpoint.npz") if damage in ("truncated", "garbage") else nullcontext():
        rs, progress = exp.load_checkpoint()
    expected, _ = Experiment(resolve(TINY), finished[0], quiet=True).read_progress()
    if damage == "stale_tmp":
        assert progress == expected
        return
    assert progress["blocks_done"] < expected["blocks_done"]  # the previous one's progress, with its state
    assert int(np.asarray(rs.algo.updates)[0]) == progress["blocks_done"] * 5
    # and the run goes on from it to the end, its outputs rewritten from that point
    if damage == "missing":
        rows = Experiment(resolve(TINY), run_dir, quiet=True).run()
        assert [r["env_steps"] for r in rows] == [0, 300, 400]  # rewritten from 300, no duplicated rows
        with open(run_dir / "metrics.csv") as f:
            assert [line.split(",")[1] for line in f.read().splitlines()[1:]] == ["0", "300", "400"]
        assert len(list((run_dir / "tb" / "seed_0").iterdir())) == 1  # one events file, not one per process


def test_no_loadable_checkpoint_is_an_error_naming_what_was_wrong(finished, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished[0], run_dir)
    for name in ("checkpoint.npz", "checkpoint.prev.npz"):
        (run_dir / name).write_bytes(b"broken")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no loadable checkpoint .*checkpoint.npz: ValueError: not an npz archive.*--no-resume"):
        Experiment(resolve(TINY), run_dir, quiet=True).load_checkpoint()


def test_the_replay_holds_no_more_than_the_run_can_fill(finished):
    _, exp = finished
    rs, _ = exp.load_checkpoint()
    # 400 env steps of 4 envs: 100 vector steps (+1), not buffer_size=1M / 4
    assert rs.buffer.experience.obs.shape[:3] == (1, 4, 101)


@pytest.mark.parametrize("argv, words", [
    (["train", "batch_size=1e400"], "invalid value '1e400' for batch_size"),
    (["train", "total_steps=inf"], "invalid value 'inf' for total_steps"),
    (["train", "alpha=nan"], "invalid alpha=nan: must be a finite number"),
    (["train", "actor_lr=inf"], "invalid actor_lr=inf: must be a finite number"),
    (["train", "hidden_sizes="], "invalid hidden_sizes=()"),
    (["train", "algo=happo", "n_step=5"], "unknown config key 'n_step' for algo=happo.*n_step is a key of .*hasac"),
    (["eval", "/nonexistent/run", "--episodes", "3"], "/nonexistent/run is not a run directory"),
    (["eval", "/nonexistent/run", "--episodes", "0"], "invalid --episodes 0"),
    (["eval", "/nonexistent/run", "--episodes", "-3"], "invalid --episodes -3"),
    (["solve", "--alpha", "nan"], "invalid alpha=nan: must be a finite number"),
    (["plot", "/tmp", "--metric", "eval_return_mean"], "/tmp is not a run directory"),
])
def test_bad_input_fails_in_one_line_before_compiling(capsys, argv, words):
    import re

    t0 = time.perf_counter()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("meharl: error: ") and re.search(words, err[0]), err
    assert time.perf_counter() - t0 < 5


def test_ctrl_c_says_where_the_run_stopped_and_how_to_resume(tmp_path, capsys, monkeypatch):
    args = [f"{k}={v}" for k, v in TINY.items()]
    original, calls = Experiment.save_checkpoint, []

    def interrupting(self, rs, progress):  # Ctrl-C right after the first checkpoint (300 of 400 steps)
        original(self, rs, progress)
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(Experiment, "save_checkpoint", interrupting)
    assert main(["train", *args, "--run-dir", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err
    assert "meharl: interrupted; the last checkpoint is at env step 300" in err
    assert f"Resume with: meharl train {' '.join(args)} --run-dir {tmp_path / 'run'}" in err
    monkeypatch.setattr(Experiment, "save_checkpoint", original)
    assert main(["train", *args, "--run-dir", str(tmp_path / "run")]) == 0
    assert f"meharl: resuming {tmp_path / 'run'} from env step 300" in capsys.readouterr().out


def test_a_non_finite_loss_ends_in_one_error_line_with_the_resume_command(tmp_path, capsys, monkeypatch):
    from meharl.experiment import NaNError

    def diverged(self, resume):
        raise NaNError("non-finite critic_loss at env step 300; the last good checkpoint (C, env step 200) is kept")

    monkeypatch.setattr(Experiment, "_run", diverged)
    args = [f"{k}={v}" for k, v in TINY.items()]
    assert main(["train", *args, "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("meharl: error: non-finite critic_loss at env step 300")
    assert err[0].endswith(f"Resume from it with: meharl train {' '.join(args)} --run-dir {tmp_path / 'run'}")


def test_a_fresh_start_removes_another_run_s_checkpoints(finished, tmp_path):
    """--no-resume (or a new config) in a directory that holds a checkpoint: the old checkpoints
    go before anything trains, so neither a later resume nor a fallback can load them."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished[0], run_dir)
    exp = Experiment(resolve({**TINY, "total_steps": 300}), run_dir, quiet=True)
    exp.run(resume=False)
    progress, _ = exp.read_progress()
    assert progress["rows"][-1]["env_steps"] == 300
    assert not (run_dir / "checkpoint.prev.npz").exists()  # the 300-step run checkpointed once


def test_a_checkpoint_with_the_full_replay_of_an_older_version_still_loads(finished, tmp_path):
    """Checkpoints written before the replay was sized to the run hold buffer_size // n_envs
    steps per env: they load, cut to the run's size, with the filled part intact."""
    _, exp = finished
    rs, progress = exp.load_checkpoint()
    big = rs._replace(buffer=rs.buffer.replace(experience=jax.tree.map(
        lambda x: np.pad(np.asarray(x), [(0, 0), (0, 0), (0, 400)] + [(0, 0)] * (x.ndim - 3)), rs.buffer.experience)))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    old = Experiment(resolve(TINY), run_dir, quiet=True)
    old.save_checkpoint(big, progress)
    loaded, _ = old.load_checkpoint()
    for a, b in zip(jax.tree.leaves(rs), jax.tree.leaves(loaded)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("overrides, words", [
    ({"value_norm": None}, "invalid value None for value_norm"),
    ({"run_dir": None}, "invalid value None for run_dir"),
    ({"algo": "happo", "use_recurrent_policy": "true", "critic_num_mini_batch": 500},
     "critic_num_mini_batch=500: more minibatches than the 400 chunks"),
])
def test_more_bad_values_are_refused(overrides, words):
    with pytest.raises(ValueError, match=words):
        resolve(overrides)
