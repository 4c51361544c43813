"""``meharl sweep``: the grid, its dry run, and sweeps that are killed and run again."""
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from meharl.cli import main
from meharl.sweep import expand, load_grid_file, parse_grid


def test_the_grid_expands_to_one_run_per_config_with_the_seeds_together():
    grid = parse_grid(["algo=hasac,happo", "env=matrix/hasac_3x3,mpe/simple_spread", "seeds=0-2,7", "alpha=0.1,1",
                       "n_step=1,5", "hidden_sizes=16,16:32,32"])
    assert grid["seeds"] == ["0,1,2,7"] and grid["hidden_sizes"] == ["16,16", "32,32"]
    runs = expand(grid)
    # HASAC: 2 envs x 2 alphas x 2 n_steps x 2 widths; HAPPO has no n_step: its 2 collapse into 1
    assert len(runs) == 16 + 8
    assert all(r.overrides["seeds"] == "0,1,2,7" for r in runs)
    assert not any("n_step" in r.overrides for r in runs if r.overrides["algo"] == "happo")
    assert len({r.name for r in runs}) == len(runs)
    assert runs[0].name == "hasac__matrix_hasac_3x3__alpha=0.1__n_step=1__hidden_sizes=16_16"


def test_a_bad_key_stops_the_sweep_and_a_bad_value_only_its_run(tmp_path):
    with pytest.raises(ValueError, match="unknown config key 'alpah'.*Did you mean alpha"):
        expand(parse_grid(["algo=hasac", "alpah=1"]))
    with pytest.raises(ValueError, match="invalid seeds range '4-0'"):
        parse_grid(["seeds=4-0"])
    runs = expand(parse_grid(["alpha=1,-1"]))
    assert [r.status for r in runs] == ["pending", "invalid"] and "alpha=-1.0: must be >= 0" in runs[1].error
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text("algo: hasac\nhidden_sizes: [[16, 16], [32]]\nseeds: 0-1\n")
    assert load_grid_file(grid_file) == {"algo": ["hasac"], "hidden_sizes": ["16,16", "32"], "seeds": ["0,1"]}


def test_dry_run_lists_the_runs_and_trains_nothing(tmp_path, capsys):
    assert main(["sweep", "env=matrix/hasac_3x3", "alpha=1,10,-1", "--dir", str(tmp_path / "s"), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("pending  hasac__matrix_hasac_3x3__alpha=1: meharl train env=matrix/hasac_3x3 alpha=1 "
                             "--run-dir")
    assert out[2].startswith("invalid  hasac__matrix_hasac_3x3__alpha=-1: invalid alpha=-1.0")
    assert out[-1] == f"3 runs, 0 done; sweep directory {tmp_path / 's'}"
    assert not (tmp_path / "s").exists()


GRID = ["algo=hasac", "env=matrix/hasac_3x3", "alpha=1,10,-1", "total_steps=3000", "seeds=0-1"]


def _sweep(sweep_dir):
    return subprocess.Popen([sys.executable, "-m", "meharl.cli", "sweep", *GRID, "--dir", str(sweep_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _numbers(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "wall_time"} for row in csv.DictReader(f)]


def _index(sweep_dir):
    path = sweep_dir / "sweep.json"
    return {r["name"]: r for r in json.loads(path.read_text())["runs"]} if path.exists() else {}


def _wait(what, timeout=300):
    t = time.time()
    while not what():
        assert time.time() - t < timeout, "timed out"
        time.sleep(0.05)


def _attempts(run_dir):
    """(where, pid, niceness) of every attempt of a run, from its ``sweep.log``."""
    log = (run_dir / "sweep.log").read_text() if (run_dir / "sweep.log").exists() else ""
    return [(m[1], int(m[2]), int(m[3])) for m in re.finditer(r"^sweep: attempt on (.*), pid (\d+), nice (-?\d+)$",
                                                             log, re.M)]


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


NAMES = ["hasac__matrix_hasac_3x3__alpha=1", "hasac__matrix_hasac_3x3__alpha=10"]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The uninterrupted sweep of GRID: two valid configs and an invalid one."""
    sweep_dir = tmp_path_factory.mktemp("whole")
    proc = _sweep(sweep_dir)
    return sweep_dir, proc.communicate()[0], proc.returncode


def test_a_sweep_trains_every_valid_config_and_reports_the_invalid_one(whole):
    sweep_dir, out, rc = whole
    assert rc == 1, out  # not every run is done: one is invalid
    assert "invalid config, not run: invalid alpha=-1.0" in out and "sweep: 2 done, 1 invalid" in out
    assert {n: r["status"] for n, r in _index(sweep_dir).items()} == {
        NAMES[0]: "done", NAMES[1]: "done", "hasac__matrix_hasac_3x3__alpha=-1": "invalid"}


def test_a_killed_worker_and_a_killed_sweep_lose_nothing(whole, tmp_path):
    """The first run's training process is killed after its first checkpoint (the sweep
    retries it, resuming), then the sweep's process is killed during the second run (its
    training process dies with it); the same command run again skips the first and resumes
    the second. Both runs end with the numbers of the uninterrupted sweep."""
    cut = tmp_path / "cut"
    sweep = _sweep(cut)
    _wait(lambda: (cut / NAMES[0] / "checkpoint.npz").exists() and _index(cut)[NAMES[0]]["pid"])
    os.kill(_index(cut)[NAMES[0]]["pid"], signal.SIGKILL)  # the first run's training process
    _wait(lambda: (cut / NAMES[1] / "checkpoint.npz").exists())
    assert _index(cut)[NAMES[0]]["attempts"] == 2 and _index(cut)[NAMES[0]]["status"] == "done"
    worker = _index(cut)[NAMES[1]]["pid"]
    sweep.kill()  # the sweep's process alone (SIGKILL), during the second run
    sweep.wait()
    _wait(lambda: not _alive(worker), timeout=3)  # it died with the sweep (the mechanism: the next test)
    assert _index(cut)[NAMES[1]]["status"] == "running"
    again = _sweep(cut)
    out = again.communicate()[0]
    assert f"{NAMES[0]}: done before, skipped" in out and "sweep: 2 done, 1 invalid" in out, out
    assert "resuming" in (cut / NAMES[1] / "sweep.log").read_text()
    for name in NAMES:
        assert _numbers(cut / name) == _numbers(whole[0] / name), name


def test_the_same_sweep_on_a_local_ray_instance(whole, tmp_path):
    """Every run a Ray task (one CPU each) on a Ray instance the sweep starts: the local
    sweep's numbers, and an invalid config reported the same way."""
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'meharl[ray]'")
    ray = [*GRID[:2], "alpha=1,-1", *GRID[3:], "--dir", str(tmp_path / "ray"), "--ray"]  # one valid config (CI time)
    proc = subprocess.run([sys.executable, "-m", "meharl.cli", "sweep", *ray], capture_output=True, text=True)
    assert proc.returncode == 1 and "sweep: 1 done, 1 invalid" in proc.stdout, proc.stdout + proc.stderr
    assert _numbers(tmp_path / "ray" / NAMES[0]) == _numbers(whole[0] / NAMES[0])
    # trained at the sweep's priority, not at the nice 15 of Ray's workers (docs/sweeps.md)
    assert [nice for _, _, nice in _attempts(tmp_path / "ray" / NAMES[0])] == [os.nice(0)]


def test_a_training_process_dies_with_the_process_that_started_it(tmp_path):
    """A process starts a run as a sweep does (``_spawn``) and is killed (SIGKILL) at once:
    the run's training process, which would compile and train for tens of seconds, is gone
    within 5 s (Linux's parent-death signal, armed when ``meharl train`` starts)."""
    starter = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from meharl.sweep import _spawn\n"
        f"proc = _spawn(['train', 'env=matrix/hasac_3x3', 'total_steps=200000', '--run-dir', {str(tmp_path)!r}], "
        f"open({str(tmp_path / 'log')!r}, 'a'), 'here')\n"
        "print(proc.pid, flush=True)\n"
        "time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    child = int(starter.stdout.readline())
    starter.kill()
    starter.wait()
    try:
        _wait(lambda: not _alive(child), timeout=5)
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_sweep_on_a_two_node_ray_cluster_survives_a_lost_node(whole, tmp_path, monkeypatch):
    """A Ray cluster of two nodes with one CPU each (both on this machine, as Ray's own
    multi-node tests do), the sweep given its address: the two runs train on different nodes.
    The node of one run is removed (its processes killed) after that run's first checkpoint:
    its training process dies with its worker, the run is retried on the other node and
    resumes, and both runs end with the numbers of the uninterrupted sweep."""
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'meharl[ray]'")
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_worker_niceness", "0")  # as docs/sweeps.md says to start a cluster's nodes
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        lost = cluster.add_node(num_cpus=1)
        d = tmp_path / "cluster"
        args = [*GRID[:2], "alpha=1,10", *GRID[3:], "--dir", str(d), "--ray", cluster.address]
        sweep = subprocess.Popen([sys.executable, "-m", "meharl.cli", "sweep", *args], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)

        def on_lost_node():
            return [n for n in NAMES if (d / n / "checkpoint.npz").exists()
                    and any(lost.node_id[:12] in where for where, _, _ in _attempts(d / n))]

        _wait(lambda: on_lost_node() or sweep.poll() is not None)
        assert sweep.poll() is None, sweep.communicate()[0]
        victim = on_lost_node()[0]
        (_, pid, _), = _attempts(d / victim)
        cluster.remove_node(lost, allow_graceful=False)
        _wait(lambda: not _alive(pid), timeout=60)  # no orphan left training beside the retry
        out = sweep.communicate(timeout=600)[0]
        assert sweep.returncode == 0 and "sweep: 2 done" in out, out
    finally:
        cluster.shutdown()
    assert len({_attempts(d / n)[0][0] for n in NAMES}) == 2  # the first attempts: one run per node
    index = _index(d)
    assert index[victim]["attempts"] == 2 and lost.node_id[:12] not in index[victim]["node"]
    assert "resuming" in (d / victim / "sweep.log").read_text()
    for name in NAMES:
        assert _numbers(d / name) == _numbers(whole[0] / name), name


def test_iqm_intervals_and_probability_of_improvement_on_worked_examples():
    """Scores 0..9 of ten seeds on one task: the IQM is the mean of the middle half, 2..7 =
    4.5; its 95% interval is the percentile bootstrap over seeds, recomputed here by hand.
    Constant scores have a zero-width interval; a config whose every score beats the other's
    improves on it with probability 1, identical ones with 0.5."""
    from scipy import stats

    from meharl.report import iqm_interval, probability_of_improvement

    x = np.arange(10.0)[:, None]
    s = iqm_interval({"a": x, "flat": np.full((10, 1), 3.0)}, reps=5000)
    assert s["a"]["iqm"] == pytest.approx(4.5) and s["a"]["mean"] == pytest.approx(4.5)
    rng = np.random.default_rng(0)
    boot = stats.trim_mean(rng.choice(x[:, 0], (20000, 10)), 0.25, axis=1)
    np.testing.assert_allclose(s["a"]["iqm_ci"], np.percentile(boot, [2.5, 97.5]), atol=0.15)
    assert s["flat"]["iqm_ci"] == [3.0, 3.0]
    assert probability_of_improvement(x + 10, x)["p"] == 1.0
    assert probability_of_improvement(x, x)["p"] == pytest.approx(0.5)


def test_report_of_a_sweep(whole, tmp_path):
    """`meharl report` over the uninterrupted sweep: both configs' IQMs on the task, the
    aggregate with the probability of improvement, the figures and marl-eval's JSON."""
    from meharl.cli import main as cli

    assert cli(["report", str(whole[0]), "--out", str(tmp_path), "--reps", "500"]) == 0
    doc = json.loads((tmp_path / "report.json").read_text())
    labels = {"hasac alpha=1.0", "hasac alpha=10.0"}
    assert set(doc["tasks"]["matrix/hasac_3x3"]) == labels
    for label in labels:
        entry = doc["tasks"]["matrix/hasac_3x3"][label]
        assert entry["seeds"] == [0, 1] and entry["final"]["iqm_ci"][0] <= entry["final"]["iqm"] <= entry["final"]["iqm_ci"][1]
        assert entry["final"]["per_seed"] == [float(r["eval_return_mean"]) for r in _numbers(whole[0] / NAMES[label == "hasac alpha=10.0"])
                                              if int(r["env_steps"]) == entry["env_steps"]]
    improvement = doc["aggregate"]["probability_of_improvement"]
    assert improvement["hasac alpha=1.0 > hasac alpha=10.0"]["p"] + improvement["hasac alpha=10.0 > hasac alpha=1.0"]["p"] == pytest.approx(1.0)
    for name in ("report.md", "curves_matrix_hasac_3x3.png", "performance_profile.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert set(json.loads((tmp_path / "marl_eval.json").read_text())["matrix"]["hasac_3x3"]) == labels
