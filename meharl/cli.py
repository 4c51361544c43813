"""Command line: ``meharl train|eval|plot|solve``.

    meharl train [key=value ...]        e.g. meharl train env=mpe/simple_spread seeds=0,1,2 total_steps=200000
    meharl eval RUN_DIR [--episodes N]
    meharl plot RUN_DIR [RUN_DIR ...] [--out curve.png] [--metric COLUMN] [--window LO:HI] [--label NAME ...]
                                        RUN_DIR,RUN_DIR,...: seeds of one config run apart, one curve;
                                        prints final (and window) statistics over seeds as JSON, then the PNG
    meharl solve --game hasac_3x3 --alpha 10 [--json]
    meharl sweep [key=v1,v2 ...] [--file GRID.yaml] [--dir SWEEP_DIR] [--workers N] [--dry-run]
                                        every config of the grid, a run directory each (seeds vmapped);
                                        run again: the done runs are skipped, the others resume
    meharl report SWEEP_DIR [--out DIR] [--window LO:HI] [--metric COLUMN] [--reps N]
                                        IQM with bootstrap intervals per task and across tasks, probability
                                        of improvement, performance profiles, curves, marl-eval JSON
    meharl list                         environments, and every algorithm with its keys, defaults and meaning

``meharl train`` prints the run directory as the last line of its output.
"""
from __future__ import annotations

import argparse
import json
import sys

DEFAULT_MAIN = {"env": "mpe/simple_spread", "total_steps": "60000", "eval_interval": "10000", "seeds": "0"}


def _train(args):
    from meharl.sweep import die_with_parent

    die_with_parent()  # when a sweep started this process; first, before the seconds of importing JAX

    from meharl.config import parse_overrides, resolve
    from meharl.experiment import Experiment, NaNError

    overrides = parse_overrides(args.overrides)
    if not args.overrides:
        overrides = dict(DEFAULT_MAIN)
        print("meharl: no arguments given, running the default short HASAC job: "
              + " ".join(f"{k}={v}" for k, v in overrides.items()))
    cfg = resolve(overrides)  # validates before any compilation
    exp = Experiment(cfg, args.run_dir)
    resume = "meharl train " + " ".join(f"{k}={v}" for k, v in overrides.items()) + f" --run-dir {exp.run_dir}"
    try:
        rows = exp.run(resume=not args.no_resume)
    except KeyboardInterrupt:
        progress, path = exp.read_progress()
        where = f"env step {progress['rows'][-1]['env_steps']} ({path})" if progress else "no checkpoint yet"
        raise Interrupted(f"interrupted; the last checkpoint is at {where}. Resume with: {resume}") from None
    except NaNError as err:
        raise ValueError(f"{err}. Resume from it with: {resume}") from None
    last = {}
    for r in rows:
        last[r["seed"]] = r
    for seed, r in last.items():
        print(f"seed {seed}: env_steps={r['env_steps']} eval_return_mean={r['eval_return_mean']:.3f}")
    print(f"results: {exp.run_dir / 'metrics.csv'}")
    print(f"plot: {exp.run_dir / 'learning_curve.png'}")
    print(exp.run_dir)


class Interrupted(Exception):
    """Ctrl-C during a training, with where it stopped."""


def _eval(args):
    from meharl.envs import headline_metric
    from meharl.experiment import evaluate_run, load_run

    if args.episodes is not None and args.episodes < 1:
        raise ValueError(f"invalid --episodes {args.episodes}: give a positive number of episodes")
    cfg = load_run(args.run_dir)
    per_seed, where = evaluate_run(args.run_dir, args.episodes, cfg, args.step)
    out = {"run_dir": args.run_dir, **where,
           "eval_return": {str(s): {"mean": float(r.mean()), "std": float(r.std()), "episodes": len(r)}
                           for s, (r, _) in per_seed.items()}}
    if headline_metric(cfg.env) == "eval_win_rate":
        out["eval_win_rate"] = {str(s): float(won.mean()) for s, (_, won) in per_seed.items()}
    print(json.dumps(out))


def _window(text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(float(x)) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid window {text!r}: give LO:HI env steps, e.g. 500000:1000000")
    return lo, hi


def _plot(args):
    from meharl.plotting import headline_metric_of, plot_runs, summarize

    args.metric = args.metric or headline_metric_of(args.run_dirs)
    # one JSON line per curve (final and window statistics over seeds), then the PNG; printed
    # only once both succeeded, so a bad window or bad labels print nothing
    summaries = [summarize(run_dir, args.metric, args.window) for run_dir in args.run_dirs]
    png = plot_runs(args.run_dirs, args.out, args.metric, args.label)
    for summary in summaries:
        print(json.dumps(summary))
    print(png)


def _solve(args):
    from meharl.solvers import solve_game

    res = solve_game(args.game, args.alpha)
    if args.json:
        print(json.dumps(res))
        return
    print(f"HASPI on {res['game']} at alpha={res['alpha']} ({res['iterations']} iterations)")
    for name in ("first_update", "converged"):
        for i, p in enumerate(res[name]):
            print(f"  {name:12s} agent {i + 1}: " + " ".join(f"{x:.4f}" for x in p))
    if res["qre_residual"] is not None:
        print(f"  QRE residual (Theorem 1): {res['qre_residual']:.2e}")


def _sweep(args):
    from meharl.sweep import Sweep, default_dir, expand, load_grid_file, parse_grid

    if args.workers < 1:
        raise ValueError(f"invalid --workers {args.workers}: give a positive number of parallel runs")
    if args.retries < 0:
        raise ValueError(f"invalid --retries {args.retries}: give 0 or more")
    grid = {**(load_grid_file(args.file) if args.file else {}), **parse_grid(args.grid)}
    if not grid:
        raise ValueError("an empty sweep: give key=v1,v2 arguments or --file GRID.yaml")
    runs = expand(grid)
    sweep_dir = args.dir or default_dir(grid)
    command = "meharl sweep " + " ".join(args.grid) + (f" --file {args.file}" if args.file else "") + f" --dir {sweep_dir}"
    if args.ray is not None:
        from meharl.sweep import RaySweep

        command += " --ray" + (f" {args.ray}" if args.ray != "local" else "")
        sweep = RaySweep(runs, sweep_dir, command, args.retries, address=args.ray, cpus=args.cpus_per_run,
                         gpus=args.gpus_per_run)
    else:
        sweep = Sweep(runs, sweep_dir, command, args.retries)
    if args.dry_run:
        for r in runs:
            shown = r.error if r.status == "invalid" else "meharl " + " ".join(sweep.train_command(r))
            print(f"{r.status:8s} {r.name}: {shown}")
        print(f"{len(runs)} runs, {sum(r.status == 'done' for r in runs)} done; sweep directory {sweep_dir}")
        return 0
    ok = sweep.run(args.workers)
    if args.report and any(r.status == "done" for r in runs):
        from meharl.report import report

        print(f"report: {report(sweep.dir) / 'report.md'}")
    counts = {s: sum(r.status == s for r in runs) for s in ("done", "failed", "invalid")}
    print("sweep: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + f"; index {sweep.dir / 'sweep.json'}")
    print(sweep.dir)
    return 0 if ok else 1


def _report(args):
    from meharl.report import report

    if args.reps < 100:
        raise ValueError(f"invalid --reps {args.reps}: give at least 100 bootstrap resamples")
    out = report(args.root, args.out, args.metric, args.window, args.reps)
    print((out / "report.md").read_text())
    print(out)


def _keys(title, cls) -> str:
    """A config class's keys, one line each: name, default, meaning."""
    from meharl.algorithms.base import describe

    return "\n".join([title] + [f"  {name:36s} {default:22s} {help}" for name, default, help in describe(cls)])


def _common_keys() -> str:
    from meharl.config import EnvConfig, RunConfig

    return _keys("run keys (every algorithm):", RunConfig) + "\n" + _keys("environment keys (every algorithm):", EnvConfig)


def _list(args):
    from meharl.algorithms import ALGORITHMS
    from meharl.envs import ENV_NAMES

    print("environments: " + ", ".join(ENV_NAMES))
    print(_common_keys())
    for name, algo in ALGORITHMS.items():
        kinds = [k for k in ("continuous", "discrete") if getattr(algo, k)]
        print(f"\nalgo={name}: {algo.description} [{algo.learner.replace('_', '-')}; {', '.join(kinds)} actions]")
        print(_keys("  keys:", algo.Config))


def parser(argv: list[str]) -> argparse.ArgumentParser:
    """The command line of ``meharl`` (``argv`` decides whether ``train --help`` lists the keys)."""
    p = argparse.ArgumentParser(prog="meharl", allow_abbrev=False, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    # `meharl train --help` lists the run and environment keys (built only then: it imports the config)
    epilog = (_common_keys() + "\nalgorithm keys (algo=...): `meharl list`"
              if argv[:1] == ["train"] and {"-h", "--help"} & set(argv) else None)
    t = sub.add_parser("train", allow_abbrev=False, help="train (all seeds at once); prints the run directory last",
                       epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("overrides", nargs="*", help="key=value config overrides (see `meharl list`)")
    t.add_argument("--run-dir", default=None, help="run directory (default: runs/<algo>_<env>_<time>)")
    t.add_argument("--no-resume", action="store_true", help="ignore a checkpoint already in --run-dir")
    t.set_defaults(func=_train)
    e = sub.add_parser("eval", allow_abbrev=False, help="re-evaluate a run's last checkpoint or a kept policy")
    e.add_argument("run_dir")
    e.add_argument("--episodes", type=int, default=None)
    e.add_argument("--step", type=int, default=None,
                   help="env step of a policy kept by keep_policies=true (default: the last checkpoint)")
    e.set_defaults(func=_eval)
    pl = sub.add_parser("plot", allow_abbrev=False,
                        help="learning curves (mean, 95%% CI over seeds) of one or more runs")
    pl.add_argument("run_dirs", nargs="+", help="one curve each; DIR1,DIR2,... merges runs of one config "
                    "that trained different seeds")
    pl.add_argument("--out", default="learning_curves.png")
    pl.add_argument("--metric", default=None, help="a metrics.csv column (default: eval_win_rate for "
                    "battles and football, else eval_return_mean)")
    pl.add_argument("--window", type=_window, default=None,
                    help="LO:HI env steps: also report each seed's mean evaluation over this window")
    pl.add_argument("--label", action="append", default=None,
                    help="legend name of a curve (default: its first run directory's name); once per RUN_DIR, in order")
    pl.set_defaults(func=_plot)
    s = sub.add_parser("solve", allow_abbrev=False, help="exact HASPI / QRE on a matrix game")
    s.add_argument("--game", default="hasac_3x3")
    s.add_argument("--alpha", type=float, default=10.0)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_solve)
    sw = sub.add_parser("sweep", allow_abbrev=False, help="a grid of configs, each trained in a run directory under "
                        "one sweep directory; prints that directory last")
    sw.add_argument("grid", nargs="*", help="key=v1,v2 alternatives (list-valued keys: v1:v2), seeds=0-4")
    sw.add_argument("--file", default=None, help="a YAML grid: key: value or [alternatives] (the command line's "
                    "keys override it)")
    sw.add_argument("--dir", default=None, help="the sweep directory (default: runs/sweep-<hash of the grid>)")
    sw.add_argument("--workers", type=int, default=1, help="runs trained at once, each in its own process")
    sw.add_argument("--retries", type=int, default=2, help="times a run whose process died is resumed")
    sw.add_argument("--dry-run", action="store_true", help="print the runs and their status, train nothing")
    sw.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                    help="run every config as a Ray task: on a new local Ray instance, or on the cluster at "
                    "ADDRESS ('auto': the one `ray start` made on this machine; needs pip install 'meharl[ray]')")
    sw.add_argument("--cpus-per-run", type=float, default=1, help="with --ray: the CPUs each run declares")
    sw.add_argument("--gpus-per-run", type=float, default=0, help="with --ray: the GPUs each run declares")
    sw.add_argument("--report", action="store_true", help="then write `meharl report` of the sweep directory")
    sw.set_defaults(func=_sweep)
    rp = sub.add_parser("report", allow_abbrev=False, help="the field's statistics over a sweep's runs; prints the "
                        "tables, then the report directory")
    rp.add_argument("root", help="a sweep directory (or any directory of run directories)")
    rp.add_argument("--out", default=None, help="the report directory (default: ROOT/report)")
    rp.add_argument("--metric", default=None, help="a metrics.csv column (default: each task's headline metric)")
    rp.add_argument("--window", type=_window, default=None, help="LO:HI env steps of the late score (default: "
                    "the last 10%% of each run)")
    rp.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    rp.set_defaults(func=_report)
    sub.add_parser("list", allow_abbrev=False, help="algorithms, environments and config keys").set_defaults(func=_list)
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parser(argv).parse_args(argv)
    try:
        rc = args.func(args)
    except (ValueError, FileNotFoundError, ModuleNotFoundError) as err:
        print(f"meharl: error: {err}", file=sys.stderr)
        return 2
    except Interrupted as err:
        print(f"meharl: {err}", file=sys.stderr)
        return 130
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
