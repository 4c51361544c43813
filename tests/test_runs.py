"""Training runs end to end: outputs, exact resume, seed independence, NaN stop, CLI."""
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from meharl.config import resolve
from meharl.experiment import Experiment, NaNError, load_run, load_trained
from meharl.report import marl_eval_seed

TINY = dict(
    env="mpe/simple_speaker_listener", hidden_sizes="16,16", n_envs=4, warmup_steps=200, train_interval=5,
    update_per_train=1, batch_size=32, buffer_size=2000, n_step=3, eval_interval=100, total_steps=600,
    eval_episodes=4, seeds="0,1", checkpoint_every=1,
)
COMPARED = ["seed", "env_steps", "eval_return_mean", "critic_loss", "actor_loss", "alpha", "entropy"]


def _read(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    args = [f"{k}={v}" for k, v in TINY.items()] + ["keep_policies=true"]
    out = subprocess.run([sys.executable, "-m", "meharl.cli", "train", *args, "--run-dir", str(run_dir)],
                         capture_output=True, text=True, check=True)
    return run_dir, out.stdout


def test_cli_prints_run_dir_last_and_writes_outputs(cli_run):
    run_dir, stdout = cli_run
    assert stdout.strip().splitlines()[-1] == str(run_dir)
    for name in ("config.yaml", "metrics.csv", "marl_eval.json", "learning_curve.png", "checkpoint.npz"):
        assert (run_dir / name).exists(), name
    versions = json.loads((run_dir / "versions.json").read_text())
    assert versions["jax"] == jax.__version__ and versions["python"] == sys.version.split()[0]
    assert list((run_dir / "tb").glob("seed_*/events.*"))
    # per-agent metrics: one column per agent (speaker, listener) besides their mean
    trained = [r for r in _read(run_dir) if r["alpha"]]
    assert trained
    for r in trained:
        for m in ("alpha", "entropy"):
            assert float(r[m]) == pytest.approx((float(r[f"{m}_0"]) + float(r[f"{m}_1"])) / 2, rel=1e-5, abs=1e-6)
        assert r["alpha_0"] != r["alpha_1"]  # two temperatures, not one copied
    rows = _read(run_dir)
    assert {"seed", "env_steps", "eval_return_mean", "wall_time", "critic_loss", "alpha", "entropy"} <= set(rows[0])
    # evaluation at 0 and after every 100 env steps past the warmup, for both seeds
    assert sorted({int(r["env_steps"]) for r in rows}) == [0, 300, 400, 500, 600]
    assert {r["seed"] for r in rows} == {"0", "1"}
    doc = json.loads((run_dir / "marl_eval.json").read_text())
    seeds = doc["mpe"]["simple_speaker_listener"]["hasac"]
    assert set(seeds) == {"seed_0", "seed_1"}
    assert len(seeds["seed_0"]["step_1"]["return"]) == 4 and "absolute_metrics" in seeds["seed_0"]


def test_resume_after_interrupt_gives_the_same_numbers(cli_run, tmp_path, interrupt_after_second_checkpoint):
    full_dir, _ = cli_run
    cfg = resolve(TINY)
    interrupt_after_second_checkpoint(Experiment(cfg, tmp_path / "run", quiet=True))
    assert len({r["env_steps"] for r in _read(tmp_path / "run")}) == 3  # stopped after two of four chunks
    versions = tmp_path / "run" / "versions.json"
    versions.write_text(json.dumps({**json.loads(versions.read_text()), "jax": "0.0.1"}))  # as if JAX was upgraded
    with pytest.warns(UserWarning, match=rf"other package versions .*jax 0\.0\.1 -> {re.escape(jax.__version__)}"):
        Experiment(cfg, tmp_path / "run", quiet=True).run()
    resumed, full = _read(tmp_path / "run"), _read(full_dir)
    assert [[r[k] for k in COMPARED] for r in resumed] == [[r[k] for k in COMPARED] for r in full]


def test_a_finished_run_extended_to_more_steps_equals_the_longer_run(cli_run, tmp_path):
    full_dir, _ = cli_run
    run_dir = tmp_path / "run"
    Experiment(resolve({**TINY, "total_steps": 400}), run_dir, quiet=True).run()
    with pytest.raises(ValueError, match=r"differs in batch_size \(32 there, 64 here\)"):
        Experiment(resolve({**TINY, "total_steps": 600, "batch_size": 64}), run_dir, quiet=True).run()
    Experiment(resolve({**TINY, "total_steps": 600}), run_dir, quiet=True).run()
    extended, full = _read(run_dir), _read(full_dir)
    assert [[r[k] for k in COMPARED] for r in extended] == [[r[k] for k in COMPARED] for r in full]
    with pytest.raises(ValueError, match="extended, not shortened"):
        Experiment(resolve({**TINY, "total_steps": 500}), run_dir, quiet=True).run()
    assert load_run(run_dir).total_steps == 600  # the refused resume left the run's config alone
    # a decaying learning rate's schedule spans total_steps (only the saved config is read before refusing)
    decaying = resolve({**TINY, "lr_decay": True})
    (run_dir / "config.yaml").write_text(yaml.safe_dump(decaying.to_dict(), sort_keys=False))
    with pytest.raises(ValueError, match="lr_decay=true"):
        Experiment(resolve({**TINY, "lr_decay": True, "total_steps": 700}), run_dir, quiet=True).run()
    # ... as does an annealed target entropy's (on a discrete task, where it applies)
    annealed = {**TINY, "env": "mpe/simple_speaker_listener_discrete", "discrete_target_entropy_ratio_final": 0.1}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(resolve(annealed).to_dict(), sort_keys=False))
    with pytest.raises(ValueError, match="discrete_target_entropy_ratio_final=0.1: its schedule spans total_steps"):
        Experiment(resolve({**annealed, "total_steps": 700}), run_dir, quiet=True).run()


def test_a_seed_does_not_depend_on_the_other_seeds(cli_run, tmp_path):
    full_dir, _ = cli_run
    alone = Experiment(resolve({**TINY, "seeds": "1", "total_steps": 300}), tmp_path / "alone", quiet=True).run()
    together = [r for r in _read(full_dir) if r["seed"] == "1"]
    first_alone = next(r for r in alone if r["env_steps"] == 300)
    first_together = next(r for r in together if r["env_steps"] == "300")
    # vmapped and single-seed programs differ only by float reassociation
    assert float(first_together["eval_return_mean"]) == pytest.approx(first_alone["eval_return_mean"], rel=1e-4, abs=1e-4)
    assert float(first_together["critic_loss"]) == pytest.approx(first_alone["critic_loss"], rel=1e-4, abs=1e-5)


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = resolve({**TINY, "seeds": "0"})
    exp = Experiment(cfg, tmp_path / "run", quiet=True)
    algo = exp.runner.algo
    good_update = algo.update

    def poisoned(ts, batch, key):
        new, metrics = good_update(ts, batch, key)
        metrics["critic_loss"] = jnp.where(ts.updates >= 30, jnp.nan, metrics["critic_loss"])
        return new, metrics

    algo.update = poisoned  # traced on the first chunk call
    with pytest.raises(NaNError, match="non-finite critic_loss.*last good checkpoint"):
        exp.run()
    progress, _ = Experiment(cfg, tmp_path / "run", quiet=True).read_progress()
    assert progress["blocks_done"] == 5  # the first chunk (25 updates) is kept
    rs, _ = Experiment(cfg, tmp_path / "run", quiet=True).load_checkpoint()
    assert int(np.asarray(rs.algo.updates)[0]) == 25


def test_eval_cli_reevaluates_a_run(cli_run):
    run_dir, _ = cli_run
    out = subprocess.run([sys.executable, "-m", "meharl.cli", "eval", str(run_dir), "--episodes", "3"],
                         capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(res["eval_return"]) == {"0", "1"} and res["eval_return"]["0"]["episodes"] == 3
    assert "eval_win_rate" not in res  # MPE has no wins (battles: tests/test_host_runs.py)
    early = subprocess.run([sys.executable, "-m", "meharl.cli", "eval", str(run_dir), "--episodes", "3", "--step", "300"],
                           capture_output=True, text=True, check=True)
    res_early = json.loads(early.stdout.strip().splitlines()[-1])
    assert res_early["env_steps"] == 300 and res["env_steps"] == 600
    assert res_early["eval_return"]["0"]["mean"] != res["eval_return"]["0"]["mean"]  # another policy, 300 steps earlier


def test_kept_policies_are_the_algorithm_states_of_every_evaluation(cli_run, tmp_path):
    run_dir, _ = cli_run
    assert sorted(int(p.stem) for p in (run_dir / "policies").glob("*.npz")) == [0, 300, 400, 500, 600]
    _, last, where = load_trained(run_dir, step=600)
    _, final, final_where = load_trained(run_dir)  # the last checkpoint
    assert where == final_where == {"blocks_done": 20, "env_steps": 600}
    jax.tree.map(np.testing.assert_array_equal, last, final)
    _, first, _ = load_trained(run_dir, step=0)
    # 200 warmup steps, then blocks of 20 env steps (5 vector steps of 4 envs) and 5 updates
    assert int(first.updates[0]) == 0 and int(load_trained(run_dir, step=400)[1].updates[0]) == 50
    with pytest.raises(FileNotFoundError, match=r"no policy kept at env step 350 .*kept steps are \[0, 300, 400, 500, 600\]"):
        load_trained(run_dir, step=350)
    with pytest.raises(FileNotFoundError, match="did not keep policies"):
        Experiment(resolve(TINY), tmp_path, quiet=True).load_policy(300)


def test_plot_cli_prints_final_and_window_statistics(cli_run, tmp_path):
    """Per curve one JSON line: each seed's last evaluation and its mean over the window, read
    here straight from metrics.csv, and their mean with the 95% t-interval over the 2 seeds."""
    from scipy import stats

    run_dir, _ = cli_run
    out_png = tmp_path / "curves.png"
    out = subprocess.run([sys.executable, "-m", "meharl.cli", "plot", str(run_dir), str(run_dir), "--out", str(out_png),
                          "--window", "200:600"], check=True, capture_output=True, text=True)
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == str(out_png) and out_png.stat().st_size > 1000
    summary = json.loads(lines[0])
    rows = _read(run_dir)
    for key, pick in (("final", lambda rs: [rs[-1]]), ("window", lambda rs: [r for r in rs if 200 <= int(r["env_steps"]) <= 600])):
        per_seed = [np.mean([float(r["eval_return_mean"]) for r in pick([r for r in rows if r["seed"] == s])]) for s in "01"]
        got = summary[key]
        np.testing.assert_allclose([got["per_seed"]["0"], got["per_seed"]["1"]], per_seed, rtol=1e-6)
        np.testing.assert_allclose(got["mean"], np.mean(per_seed), rtol=1e-6)
        np.testing.assert_allclose(got["ci95"], stats.t.ppf(0.975, 1) * np.std(per_seed, ddof=1) / np.sqrt(2), rtol=1e-6)
    assert summary["window"]["evaluations"] == len({r["env_steps"] for r in rows if 200 <= int(r["env_steps"]) <= 600})
    bad = subprocess.run([sys.executable, "-m", "meharl.cli", "plot", str(run_dir), "--window", "200-600"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid window '200-600'" in bad.stderr


def _write_apart(run_dir, rows, d):
    """A run directory ``d`` holding ``rows`` of one seed of ``run_dir``'s metrics, with its
    config and that seed's evaluations at those rows' env steps in marl_eval.json: a seed of one
    run written as if trained apart."""
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(re.sub(r"\n  run_dir: .*\n", f"\n  run_dir: {d}\n", (run_dir / "config.yaml").read_text()))
    with open(d / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    [seed], steps = {r["seed"] for r in rows}, {int(r["env_steps"]) for r in rows}
    [(family, tasks)] = json.loads((run_dir / "marl_eval.json").read_text()).items()
    [(task, algos)] = tasks.items()
    [(algo, per_seed)] = algos.items()
    mine = marl_eval_seed([v for k, v in per_seed[f"seed_{seed}"].items() if k != "absolute_metrics" and v["step_count"] in steps])
    (d / "marl_eval.json").write_text(json.dumps({family: {task: {algo: {f"seed_{seed}": mine}}}}))
    return d


def test_seeds_run_apart_are_paired_at_the_env_steps_they_share(cli_run, tmp_path):
    """Seeds trained apart may evaluate at different env steps (one stopped early, one extended
    past its first total): curves, finals and windows pair the seeds' values at the steps every
    seed was evaluated, never one seed's value with another seed's step."""
    from meharl.plotting import aligned, read_curves, summarize
    from meharl.report import report

    run_dir, _ = cli_run
    rows = _read(run_dir)
    steps = sorted({int(r["env_steps"]) for r in rows})
    assert len(steps) >= 4
    dropped = {steps[len(steps) // 2], steps[-1]}  # seed 1 misses one evaluation and stops one early
    d0 = _write_apart(run_dir, [r for r in rows if r["seed"] == "0"], tmp_path / "seed0")
    d1 = _write_apart(run_dir, [r for r in rows if r["seed"] == "1" and int(r["env_steps"]) not in dropped],
                      tmp_path / "seed1")
    seeds, shared, values = aligned(f"{d0},{d1}")
    assert shared.tolist() == [x for x in steps if x not in dropped]
    whole = read_curves(run_dir)
    for i, seed in enumerate(seeds):
        at = dict(zip(whole[seed][0].tolist(), whole[seed][1].tolist()))
        assert values[i].tolist() == [at[x] for x in shared.tolist()]
    assert summarize(f"{d0},{d1}")["final"]["env_steps"] == steps[-2]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.csv").write_text((d0 / "metrics.csv").read_text().splitlines()[0] + "\n")
    with pytest.raises(ValueError, match="has no evaluation yet"):
        aligned(tmp_path / "empty")
    # the report's marl-eval export pairs the seeds at the same steps (marl-eval pairs by step_i)
    [tasks] = json.loads((report(tmp_path, tmp_path / "pooled", reps=50) / "marl_eval.json").read_text()).values()
    [[per_seed]] = [list(algos.values()) for algos in tasks.values()]
    for name, evaluations in per_seed.items():
        assert [v["step_count"] for k, v in evaluations.items() if k != "absolute_metrics"] == shared.tolist(), name
    # two configs on one task that end at different env steps: the report says so
    (d1 / "config.yaml").write_text((d1 / "config.yaml").read_text().replace("\n  alpha: ", "\n  alpha: 0.123 #", 1))
    md = (report(tmp_path, tmp_path / "report", reps=50) / "report.md").read_text()
    assert "end at different env steps" in md


def test_plot_and_report_merge_seeds_run_apart_and_refuse_mixed_runs(cli_run, tmp_path):
    """Seeds 0 and 1 of cli_run written as two runs (each in its own run directory) merge back
    to the run's own curves, and `meharl report` pools them into one entry with the run's own
    numbers; the same seed twice, or runs whose configs differ, are refused rather than
    averaged or reported twice under one label."""
    from meharl.plotting import read_curves, read_group, summarize
    from meharl.report import collect, report

    run_dir, _ = cli_run
    rows = _read(run_dir)
    parts = {seed: _write_apart(run_dir, [r for r in rows if r["seed"] == seed], tmp_path / "apart" / f"seed{seed}")
             for seed in ("0", "1")}
    (tmp_path / "whole").mkdir()
    os.symlink(run_dir, tmp_path / "whole" / "run")
    [pooled], [whole_entry] = collect(tmp_path / "apart"), collect(tmp_path / "whole")
    assert pooled["seeds"] == whole_entry["seeds"] == [0, 1] and len(pooled["dirs"]) == 2
    for score in ("final", "late"):
        np.testing.assert_array_equal(pooled[score], whole_entry[score])
    out = report(tmp_path / "apart", tmp_path / "report", reps=200)
    [tasks] = json.loads((out / "marl_eval.json").read_text()).values()
    assert [sorted(per) for algos in tasks.values() for per in algos.values()] == [["seed_0", "seed_1"]]
    whole, merged = read_curves(run_dir), read_group([parts["0"], parts["1"]])
    assert set(merged) == {0, 1}
    for seed in (0, 1):
        np.testing.assert_array_equal(np.stack(merged[seed]), np.stack(whole[seed]))
    assert summarize(f"{parts['0']},{parts['1']}", window=(0, 600))["window"] == summarize(run_dir, window=(0, 600))["window"]
    out_png = tmp_path / "merged.png"
    subprocess.run([sys.executable, "-m", "meharl.cli", "plot", f"{parts['0']},{parts['1']}", "--out", str(out_png),
                    "--label", "seeds run apart"], check=True, capture_output=True)
    assert out_png.stat().st_size > 1000
    two_labels = subprocess.run([sys.executable, "-m", "meharl.cli", "plot", str(run_dir), "--label", "a", "--label", "b"],
                                capture_output=True, text=True)
    assert two_labels.returncode == 2 and "2 labels (a, b) for 1 curves" in two_labels.stderr
    with pytest.raises(ValueError, match="seed 0 is in both"):
        read_group([parts["0"], parts["0"]])
    shutil.copytree(parts["0"], tmp_path / "apart" / "seed0_again")
    with pytest.raises(ValueError, match="seed 0 is in both"):
        collect(tmp_path / "apart")
    cfg = (parts["1"] / "config.yaml").read_text()
    assert "\n  alpha: " in cfg
    (parts["1"] / "config.yaml").write_text(cfg.replace("\n  alpha: ", "\n  alpha: 0.123 #", 1))
    with pytest.raises(ValueError, match="differ in alpha"):
        read_group([parts["0"], parts["1"]])


def test_plot_defaults_to_each_family_s_headline_metric(cli_run, tmp_path):
    """`meharl plot` judges battles by the win rate (as their learning_curve.png does), refuses
    to guess between runs judged differently, and names the columns for an unknown metric."""
    from meharl.plotting import headline_metric_of

    run_dir, _ = cli_run
    battle = tmp_path / "battle"
    battle.mkdir()
    (battle / "metrics.csv").write_text((run_dir / "metrics.csv").read_text())
    (battle / "config.yaml").write_text(re.sub(r"\n  env: .*\n", "\n  env: smax/3m\n", (run_dir / "config.yaml").read_text()))
    assert headline_metric_of([str(run_dir)]) == "eval_return_mean"
    assert headline_metric_of([str(battle)]) == "eval_win_rate"
    out = subprocess.run([sys.executable, "-m", "meharl.cli", "plot", str(battle), "--out", str(tmp_path / "b.png")],
                         check=True, capture_output=True, text=True)
    assert json.loads(out.stdout.splitlines()[0])["metric"] == "eval_win_rate"
    mixed = subprocess.run([sys.executable, "-m", "meharl.cli", "plot", str(run_dir), str(battle)], capture_output=True, text=True)
    assert mixed.returncode == 2 and "judged by different metrics" in mixed.stderr and "give --metric" in mixed.stderr
    bad = subprocess.run([sys.executable, "-m", "meharl.cli", "plot", str(run_dir), "--metric", "win"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown metric 'win'" in bad.stderr and "eval_win_rate" in bad.stderr


def test_bad_cli_input_fails_before_compiling():
    out = subprocess.run([sys.executable, "-m", "meharl.cli", "train", "env=mpe/nope"], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown env 'mpe/nope'" in out.stderr and "mpe/simple_spread" in out.stderr
    # An option prefix is an error, not silently the longer option (`--out` once meant `--out-dir` in a bench).
    prefix = subprocess.run([sys.executable, "-m", "meharl.cli", "eval", "some_run", "--ep", "3"], capture_output=True, text=True)
    assert prefix.returncode == 2 and "unrecognized arguments: --ep 3" in prefix.stderr


def test_hasac_train_bench_resumes_its_run(cli_run, tmp_path):
    """bench/hasac_train.py --resume continues the run in its --out-dir (an hour-long benchmark
    stopped midway need not start again): a finished 400-step run extended to 600 steps has the
    uninterrupted run's numbers, and the JSON says where this process took the run up."""
    full_dir, _ = cli_run
    script = str(Path(__file__).parents[1] / "bench" / "hasac_train.py")
    overrides = [f"{k}={v}" for k, v in TINY.items() if k not in ("env", "total_steps", "seeds")]

    def bench(steps, *flags):
        out = subprocess.run([sys.executable, script, "--env", TINY["env"], "--steps", str(steps), "--seeds", TINY["seeds"],
                              "--out-dir", str(tmp_path), *flags, *overrides], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    assert bench(400)["resumed_at"] == 0
    assert bench(600, "--resume")["resumed_at"] == 400
    extended, full = _read(tmp_path / "run_mpe_simple_speaker_listener"), _read(full_dir)
    assert [[r[k] for k in COMPARED] for r in extended] == [[r[k] for k in COMPARED] for r in full]
    done = bench(600, "--resume")  # nothing left to train: no speed to report, rather than a division by zero
    assert done["resumed_at"] == 600 and done["env_steps_per_s"] is None and done["updates_per_s"] is None


def test_resuming_with_a_different_config_is_refused(cli_run):
    run_dir, _ = cli_run
    with pytest.raises(ValueError, match=r"config differs in alpha \(.*, 0\.3 here\)"):
        Experiment(resolve({**TINY, "alpha": "0.3"}), run_dir, quiet=True).run()


def test_outcomes_mean_averages_the_checkpoints_and_refuses_mismatched_files(tmp_path):
    # The docs' "1000 battles greedy" numbers are this mean over the kept checkpoints' outcome files.
    def outcome(name, det, sto, averaged=None):
        result = {"run_dir": "r", "env_steps": 1, "episodes": 1000,
                  "deterministic": {"won": det, "wiped": 1 - det}, "stochastic": {"won": sto, "wiped": 1 - sto}}
        if averaged is not None:
            result["averaged_deterministic"] = {"won": averaged}
        (tmp_path / name).write_text(json.dumps(result))
        return str(tmp_path / name)

    script = str(Path(__file__).parents[1] / "bench" / "outcomes_mean.py")
    a, b = outcome("a.json", 0.86, 0.75), outcome("b.json", 0.89, 0.80)
    out = subprocess.run([sys.executable, script, a, b, "--out", str(tmp_path / "m.json")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    mean = json.loads((tmp_path / "m.json").read_text())
    assert mean["deterministic"]["mean"] == pytest.approx(0.875) and mean["stochastic"]["mean"] == pytest.approx(0.775)
    assert "mean 87.50% over 2 files" in out.stdout
    c = outcome("c.json", 0.9, 0.8, averaged=0.95)  # a run with an averaged actor has two more policies
    for order in ([c, a], [a, c]):
        bad = subprocess.run([sys.executable, script, *order], capture_output=True, text=True)
        assert bad.returncode == 1 and f"{a} lacks averaged_deterministic" in bad.stderr
