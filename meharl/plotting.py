"""Learning curves: mean over seeds with a 95% Student-t confidence interval."""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats


def read_curves(run_dir, metric: str = "eval_return_mean"):
    """{seed: (env_steps array, metric array)} from a run's metrics.csv."""
    curves = defaultdict(list)
    if not (Path(run_dir) / "metrics.csv").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (it has no metrics.csv)")
    with open(Path(run_dir) / "metrics.csv") as f:
        reader = csv.DictReader(f)
        if metric not in reader.fieldnames:
            raise ValueError(f"unknown metric {metric!r} in {run_dir}/metrics.csv; its columns: {', '.join(reader.fieldnames)}")
        for row in reader:
            curves[int(row["seed"])].append((int(row["env_steps"]), float(row[metric])))
    return {s: tuple(np.array(v).T) for s, v in curves.items()}


# keys that say where a run went and which seeds it trained, not what was trained
NOT_CONFIG = ("seeds", "run_dir", "name")


def read_group(run_dirs, metric: str = "eval_return_mean"):
    """The seeds of several runs of one config as one set of curves (seeds trained in separate
    processes or machines). Refuses runs whose configs differ in anything but ``NOT_CONFIG`` and
    seeds that appear twice, which would silently mix or double-count results."""
    from meharl.config import load_run

    run_dirs = [Path(d) for d in run_dirs]
    configs = [{k: v for k, v in load_run(d).flat().items() if k not in NOT_CONFIG} for d in run_dirs]
    base = configs[0]
    curves, owner = {}, {}
    for d, cfg in zip(run_dirs, configs):
        differ = sorted(k for k in base.keys() | cfg.keys() if base.get(k) != cfg.get(k))
        if differ:
            raise ValueError(f"cannot merge {run_dirs[0]} and {d}: their configs differ in {', '.join(differ)}")
        for seed, curve in read_curves(d, metric).items():
            if seed in curves:
                raise ValueError(f"seed {seed} is in both {owner[seed]} and {d}; merge runs of distinct seeds")
            curves[seed], owner[seed] = curve, d
    return curves


def headline_metric_of(run_dirs) -> str:
    """The metric the runs are judged by (``envs.headline_metric`` of each run's env): the win
    rate on battles and football, else the return; runs that disagree need an explicit metric."""
    from meharl.envs import headline_metric
    from meharl.config import load_run

    by_metric = defaultdict(list)
    for d in (d for run_dir in run_dirs for d in group_dirs(run_dir)):
        by_metric[headline_metric(load_run(d).env)].append(d)
    if len(by_metric) > 1:
        raise ValueError("the runs are judged by different metrics ("
                         + "; ".join(f"{m}: {', '.join(ds)}" for m, ds in by_metric.items()) + "): give --metric")
    return next(iter(by_metric))


def mean_ci(values: np.ndarray, confidence: float = 0.95):
    """values [seeds, points] -> (mean, half-width of the t interval); 0 width for one seed."""
    mean = values.mean(0)
    n = values.shape[0]
    if n < 2:
        return mean, np.zeros_like(mean)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(0, ddof=1) / np.sqrt(n)
    return mean, half


def group_dirs(run_dir) -> list[str]:
    """The run directories of one curve: a run directory or a comma-separated group of them."""
    return str(run_dir).split(",")


def aligned(run_dir, metric: str = "eval_return_mean"):
    """(seeds, env steps [points], values [seeds, points]) of a run or a comma-separated group of
    runs (:func:`read_group`), at the env steps where every seed was evaluated: seeds trained
    apart may stop at different steps, or evaluate at different ones (a run extended past its
    first total evaluates there too), and a value is never paired with another step's."""
    group = group_dirs(run_dir)
    curves = read_group(group, metric) if len(group) > 1 else read_curves(run_dir, metric)
    if not curves:
        raise ValueError(f"{run_dir} has no evaluation yet (its metrics.csv has no rows)")
    seeds = sorted(curves)
    at = {s: dict(zip(curves[s][0].tolist(), curves[s][1].tolist())) for s in seeds}
    steps = sorted(set.intersection(*(set(a) for a in at.values())))
    if not steps:
        raise ValueError(f"the seeds of {run_dir} share no evaluation step: "
                         + "; ".join(f"seed {s} at {min(at[s])}..{max(at[s])}" for s in seeds))
    return seeds, np.array(steps), np.array([[at[s][x] for x in steps] for s in seeds])


def summarize(run_dir, metric: str = "eval_return_mean", window: tuple[int, int] | None = None) -> dict:
    """Per-seed numbers and their mean with a 95% t-interval over seeds: the last evaluation
    ("final") and, with ``window=(lo, hi)``, the mean of the evaluations at lo <= env steps <= hi."""
    seeds, steps, values = aligned(run_dir, metric)

    def stat(per_seed):
        mean, half = mean_ci(per_seed[:, None])
        return {"per_seed": dict(zip(seeds, per_seed.tolist())), "mean": float(mean[0]), "ci95": float(half[0])}

    out = {"runs": str(run_dir), "metric": metric, "seeds": seeds,
           "final": {"env_steps": int(steps[-1]), **stat(values[:, -1])}}
    if window is not None:
        inside = (steps >= window[0]) & (steps <= window[1])
        if not inside.any():
            raise ValueError(f"no evaluation of {run_dir} lies in the window {window[0]}:{window[1]} "
                             f"(evaluations at {int(steps[0])}..{int(steps[-1])} env steps)")
        out["window"] = {"from": window[0], "to": window[1], "evaluations": int(inside.sum()),
                         **stat(values[:, inside].mean(1))}
    return out


def plot_runs(run_dirs, out_png, metric: str = "eval_return_mean", labels=None):
    """One curve per entry of ``run_dirs``: a run directory, or a comma-separated list of run
    directories of the same config with distinct seeds, merged (:func:`read_group`)."""
    if labels and len(labels) != len(run_dirs):
        raise ValueError(f"{len(labels)} labels ({', '.join(labels)}) for {len(run_dirs)} curves: "
                         f"give one label (--label) per curve (RUN_DIR argument), or none")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, run_dir in enumerate(run_dirs):
        seeds, steps, values = aligned(run_dir, metric)
        mean, half = mean_ci(values)
        label = labels[i] if labels else Path(group_dirs(run_dir)[0]).name
        ax.plot(steps, mean, label=f"{label} ({len(seeds)} seeds)")
        low, high = mean - half, mean + half
        if metric == "eval_win_rate":  # a t-interval over few seeds can leave [0, 1]; a rate cannot
            low, high = np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)
        ax.fill_between(steps, low, high, alpha=0.25)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title("mean and 95% CI over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return Path(out_png)
