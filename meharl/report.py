"""``meharl report SWEEP_DIR``: the statistics a MARL paper reports, over the runs of a sweep
(or any directory of run directories), as Agarwal et al. (NeurIPS 2021, "Deep RL at the Edge
of the Statistical Precipice") define them and their rliable library computes them. rliable
itself is not used: its dependency arch (< 8, rliable's pin) fails on import with pandas 3;
the few functions here are tested against worked examples.

Per task and config ("label": the algorithm and the keys that vary between its runs on a
task; runs of one config with different seeds, trained apart, are pooled into one entry), over
seeds: the final evaluation and the late window's mean (the last 10% of the run, or
``--window``), each as the interquartile mean (IQM) with a 95% percentile-bootstrap interval.
Across tasks, on scores normalised per task to [0, 1] by the lowest and highest late score of
any config there (win rates are not rescaled): the aggregate IQM and mean with stratified
bootstrap intervals, the probability that one config improves on another (with its interval),
and performance profiles. Outputs under ``SWEEP_DIR/report/``: ``report.md`` (the tables),
``report.json`` (every number), ``curves_<task>.png`` (all configs of a task),
``performance_profile.png`` and ``marl_eval.json`` (every run in marl-eval's format, one
algorithm entry per label).
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats

from meharl.plotting import NOT_CONFIG

IGNORED_KEYS = ("env", *NOT_CONFIG)


def _run_dirs(root: Path) -> list[Path]:
    runs = sorted(p.parent for p in root.glob("*/metrics.csv") if (p.parent / "config.yaml").is_file())
    if not runs:
        raise FileNotFoundError(f"{root} holds no run directories (subdirectories with config.yaml and metrics.csv)")
    return runs


def collect(root, metric: str | None = None, window: tuple[int, int] | None = None) -> list[dict]:
    """One entry per task and config under ``root``: its run directories (several where its
    seeds were trained apart: pooled as ``plotting.read_group`` does, which refuses a seed
    twice), label, metric and per-seed final and late scores (arrays over seeds)."""
    from meharl.config import load_run
    from meharl.envs import headline_metric
    from meharl.plotting import aligned

    dirs = _run_dirs(Path(root))
    flats = [load_run(d).flat() for d in dirs]
    # a label names the keys that vary between runs of one algorithm on one task (presets differ
    # between tasks, and algorithms have different keys: neither is a config's identity)
    groups = defaultdict(list)
    for f in flats:
        groups[(f["algo"], f["env"])].append(f)
    varying = defaultdict(set)
    for (algo, _), fs in groups.items():
        varying[algo] |= {k for k in set().union(*fs) if k not in IGNORED_KEYS
                          and len({json.dumps(f.get(k), default=str) for f in fs}) > 1}
    members = defaultdict(list)  # (task, label) -> its run directories
    for d, flat in zip(dirs, flats):
        label = " ".join([flat["algo"], *(f"{k}={flat.get(k)}" for k in sorted(varying[flat["algo"]]))])
        members[(flat["env"], label)].append(d)
    runs = []
    for (task, label), group in members.items():
        m = metric or headline_metric(task)
        joined = ",".join(str(d) for d in group)  # plotting's name of a group of runs
        seeds, steps, values = aligned(joined, m)
        lo, hi = window if window is not None else (0.9 * steps[-1], steps[-1])
        inside = (steps >= lo) & (steps <= hi)
        if not inside.any():
            raise ValueError(f"no evaluation of {joined} lies in the window {lo:g}:{hi:g} "
                             f"(evaluations at {int(steps[0])}..{int(steps[-1])} env steps)")
        runs.append({"dirs": group, "group": joined, "task": task, "label": label, "metric": m, "seeds": seeds,
                     "env_steps": int(steps[-1]), "steps": steps, "final": values[:, -1], "late": values[:, inside].mean(1),
                     "window": [float(lo), float(hi)]})
    return runs


def iqm(x, axis=None):
    """Interquartile mean: the mean of the middle 50% of the scores (scipy's trim_mean, as
    rliable's aggregate_iqm); ``axis`` None: over all of them."""
    x = np.asarray(x, float)
    return float(stats.trim_mean(x.ravel(), 0.25)) if axis is None else stats.trim_mean(x, 0.25, axis=axis)


def resample(x, reps: int, rng) -> np.ndarray:
    """The stratified bootstrap's resamples of [seeds, tasks] scores, [reps, seeds, tasks]:
    every task's column drawn over its seeds with replacement."""
    x = np.asarray(x, float)
    idx = rng.integers(0, x.shape[0], (reps,) + x.shape)
    return np.take_along_axis(np.broadcast_to(x, idx.shape), idx, 1)


def _interval(boot) -> list[float]:
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    return [float(lo), float(hi)]


def iqm_interval(scores: dict, reps: int = 2000, seed: int = 0) -> dict:
    """{label: [seeds, tasks] scores} -> {label: {"iqm", "iqm_ci", "mean", "mean_ci"}}: the
    interquartile and plain means over all (seed, task) scores, with 95% percentile intervals
    of the stratified bootstrap."""
    out = {}
    for k, x in scores.items():
        boot = resample(x, reps, np.random.default_rng(seed)).reshape(reps, -1)
        out[k] = {"iqm": iqm(x), "iqm_ci": _interval(iqm(boot, axis=1)), "mean": float(np.mean(x)),
                  "mean_ci": _interval(boot.mean(1))}
    return out


def _improvement(x, y):
    """P(X > Y) + P(X = Y) / 2 over all pairs of one task's runs, averaged over the tasks;
    x [..., n, T], y [..., m, T]."""
    gt, eq = x[..., :, None, :] > y[..., None, :, :], x[..., :, None, :] == y[..., None, :, :]
    return (gt + 0.5 * eq).mean((-3, -2)).mean(-1)


def probability_of_improvement(x, y, reps: int = 2000, seed: int = 0) -> dict:
    """P(X > Y) of two configs' [seeds, tasks] scores (ties count half), averaged over tasks,
    with its 95% stratified-bootstrap interval (each config's seeds resampled)."""
    rng = np.random.default_rng(seed)
    x, y = np.asarray(x, float), np.asarray(y, float)
    return {"p": float(_improvement(x, y)), "ci": _interval(_improvement(resample(x, reps, rng), resample(y, reps, rng)))}


def performance_profile(x, taus) -> np.ndarray:
    """The fraction of the scores above each threshold tau: x [..., seeds, tasks] -> [..., taus]."""
    x = np.asarray(x, float)
    flat = x.reshape(x.shape[:-2] + (-1,))
    return (flat[..., None, :] > np.asarray(taus)[:, None]).mean(-1)


def normalised(runs: list[dict], which: str) -> tuple[dict, list[str], list[str]]:
    """{label: [seeds, tasks]} of ``which`` scores normalised per task by the lowest and highest
    late per-seed score there (win rates as they are), for the labels that ran every task with
    the same number of seeds; also the tasks and the labels left out."""
    tasks = sorted({r["task"] for r in runs})
    by_label = defaultdict(dict)
    for r in runs:
        by_label[r["label"]][r["task"]] = r
    bounds = {}
    for t in tasks:
        if all(r["metric"] == "eval_win_rate" for r in runs if r["task"] == t):
            bounds[t] = (0.0, 1.0)
        else:
            late = np.concatenate([r["late"] for r in runs if r["task"] == t])
            bounds[t] = (float(late.min()), float(late.max()))
    out, left_out = {}, []
    for label, per_task in by_label.items():
        if set(per_task) != set(tasks) or len({len(per_task[t]["seeds"]) for t in tasks}) != 1:
            left_out.append(label)
            continue
        cols = [(per_task[t][which] - bounds[t][0]) / max(bounds[t][1] - bounds[t][0], 1e-12) for t in tasks]
        out[label] = np.stack(cols, 1)
    return out, tasks, left_out


def report(root, out_dir=None, metric: str | None = None, window=None, reps: int = 2000) -> Path:
    """Write the report of the runs under ``root`` (see the module docstring); returns its
    directory."""
    from meharl.plotting import plot_runs

    root = Path(root)
    out_dir = Path(out_dir) if out_dir else root / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = collect(root, metric, window)
    doc = {"root": str(root), "reps": reps, "tasks": {}, "aggregate": None}
    md = [f"# Report: {root}", "",
          f"IQM over seeds with 95% bootstrap intervals ({reps} resamples); late: the mean of the "
          "evaluations in the window (default: the last 10% of the run).", ""]
    for task in sorted({r["task"] for r in runs}):
        mine = sorted((r for r in runs if r["task"] == task), key=lambda r: r["label"])
        per = {which: iqm_interval({r["label"]: r[which][:, None] for r in mine}, reps) for which in ("final", "late")}
        doc["tasks"][task] = {r["label"]: {"run_dir": r["group"], "metric": r["metric"], "seeds": r["seeds"],
                                           "env_steps": r["env_steps"], "window": r["window"],
                                           **{w: {"per_seed": r[w].tolist(), **per[w][r["label"]]} for w in per}}
                              for r in mine}
        png = plot_runs([r["group"] for r in mine], out_dir / f"curves_{task.replace('/', '_')}.png",
                        mine[0]["metric"], [r["label"] for r in mine])
        md += [f"## {task} ({mine[0]['metric']})", "", f"![curves]({png.name})", "",
               "| config | seeds | env steps | final IQM [95% CI] | late IQM [95% CI] |", "| --- | --- | --- | --- | --- |"]
        md += [f"| {r['label']} | {len(r['seeds'])} | {r['env_steps']} | {_ci(per['final'][r['label']], 'iqm')} | "
               f"{_ci(per['late'][r['label']], 'iqm')} |" for r in mine]
        if len({r["env_steps"] for r in mine}) > 1:
            md += ["", "**The configs end at different env steps** (a run unfinished, or budgets that differ): "
                       "their final and late scores are not at the same budget."]
        md.append("")
    scores, tasks, left_out = normalised(runs, "late")
    if scores:
        agg = iqm_interval(scores, reps)
        labels = sorted(scores)
        improvement = {f"{a} > {b}": probability_of_improvement(scores[a], scores[b], reps)
                       for a in labels for b in labels if a != b}
        profile_png = _performance_profiles(scores, out_dir / "performance_profile.png", min(reps, 500))
        doc["aggregate"] = {"tasks": tasks, "normalised_late": {k: v.tolist() for k, v in scores.items()},
                            "left_out": left_out, "scores": agg, "probability_of_improvement": improvement}
        md += [f"## Across tasks ({len(tasks)}: {', '.join(tasks)}; late scores normalised per task)", "",
               "| config | IQM [95% CI] | mean [95% CI] |", "| --- | --- | --- |"]
        md += [f"| {k} | {_ci(agg[k], 'iqm')} | {_ci(agg[k], 'mean')} |" for k in labels]
        md += ["", "| P(X > Y) | estimate [95% CI] |", "| --- | --- |"]
        md += [f"| {k} | {v['p']:.2f} [{v['ci'][0]:.2f}, {v['ci'][1]:.2f}] |" for k, v in improvement.items()]
        md += ["", f"![performance profiles]({profile_png.name})", ""]
        if left_out:
            md += [f"Left out of the aggregate (not every task, or unequal seeds): {', '.join(left_out)}.", ""]
    (out_dir / "report.json").write_text(json.dumps(doc, indent=1))
    (out_dir / "report.md").write_text("\n".join(md))
    (out_dir / "marl_eval.json").write_text(json.dumps(_marl_eval(runs)))
    return out_dir


def _ci(stat: dict, name: str) -> str:
    lo, hi = stat[f"{name}_ci"]
    return f"{_num(stat[name])} [{_num(lo)}, {_num(hi)}]"


def _num(x: float) -> str:
    """Three significant digits, whole numbers from 100 on (a MuJoCo return reads 2419, not 2.42e+03)."""
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _performance_profiles(scores: dict, out_png: Path, reps: int) -> Path:
    """The fraction of (seed, task) scores above each threshold tau, per config, with 95%
    stratified-bootstrap bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    taus = np.linspace(0.0, 1.0, 51)
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, x in scores.items():
        lo, hi = np.percentile(performance_profile(resample(x, reps, np.random.default_rng(0)), taus), [2.5, 97.5], axis=0)
        ax.plot(taus, performance_profile(x, taus), label=label)
        ax.fill_between(taus, lo, hi, alpha=0.2)
    ax.set_xlabel(r"normalised late score $\tau$")
    ax.set_ylabel(r"fraction of runs with score > $\tau$")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png


def marl_eval_seed(evaluations: list[dict]) -> dict:
    """One seed's entry in marl-eval's raw format from its evaluations in order (each
    ``{"step_count", "return"}``): ``step_i`` keys, and ``absolute_metrics`` the last one's."""
    return {**{f"step_{i}": e for i, e in enumerate(evaluations)}, "absolute_metrics": {"return": evaluations[-1]["return"]}}


def _marl_eval(runs: list[dict]) -> dict:
    """Every run's marl_eval.json merged, each under its label (marl-eval's algorithm name; the
    seeds of a label's runs together). marl-eval pairs seeds by their ``step_i`` keys, so each
    seed keeps the evaluations at the env steps all the label's seeds share (as the report's
    scores do), renumbered, and its ``absolute_metrics`` are the last of them."""
    out: dict = {}
    for r in runs:
        shared = set(np.asarray(r["steps"]).tolist())
        for d in r["dirs"]:
            doc = json.loads((d / "marl_eval.json").read_text())
            for family, tasks in doc.items():
                for task, algos in tasks.items():
                    seeds = {name: marl_eval_seed([v for k, v in per_seed.items()
                                                   if k != "absolute_metrics" and v["step_count"] in shared])
                             for name, per_seed in next(iter(algos.values())).items()}
                    out.setdefault(family, {}).setdefault(task, {}).setdefault(r["label"], {}).update(seeds)
    return out
