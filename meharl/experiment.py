"""A training run: build env + algorithm from a config, train all seeds at once (vmap),
evaluate, log, checkpoint, resume.

Run directory layout::

    config.yaml        the resolved config
    versions.json      Python's and the numerical packages' versions the run started with
    metrics.csv        one row per (seed, evaluation): seed, env_steps, wall_time, eval_return_mean, ...
    marl_eval.json     marl-eval's raw-data format (per-episode eval returns per seed and step)
    tb/                TensorBoard events
    learning_curve.png mean and 95% interval over seeds of the eval return (win rate on battles)
    checkpoint.npz     the whole training state of all seeds and its progress record, one file
    checkpoint.prev.npz the checkpoint before it (loaded, with a warning, if the newest is broken)
    .lock              held by the training that owns the directory
    policies/          with keep_policies: <env step>.npz, the algorithm state of all seeds at each evaluation
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import datetime as _dt
import json
import os
import platform
import shutil
import socket
import time
import warnings
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import yaml

from meharl.algorithms import ALGORITHMS
from meharl.config import Config, env_options, load_run, resolve
from meharl.envs import headline_metric, is_host, make
from meharl.plotting import plot_runs
from meharl.report import marl_eval_seed
from meharl.runners.host import HostOffPolicyRunner, HostOnPolicyRunner, HostSequenceRunner
from meharl.runners.offpolicy import OffPolicyRunner
from meharl.runners.onpolicy import OnPolicyRunner
from meharl.runners.sequence import SequenceRunner

# Packages whose versions change a run's numbers: another JAX release, for one, compiles the
# same program into float reductions of another order, so a seed follows another trajectory.
VERSIONED = ("meharl", "jax", "jaxlib", "flax", "optax", "numpy", "flashbax", "jaxmarl", "gymnasium",
             "gymnasium-robotics", "mujoco", "mpe2", "pettingzoo")

# the columns of metrics.csv before the algorithm's own metrics (its ``metrics``)
EVAL_FIELDS = ["seed", "env_steps", "wall_time", "eval_return_mean", "eval_return_std", "eval_win_rate"]


# (learner kind, host-stepped env) -> runner class
RUNNERS = {("off_policy", False): OffPolicyRunner, ("off_policy", True): HostOffPolicyRunner,
           ("on_policy", False): OnPolicyRunner, ("on_policy", True): HostOnPolicyRunner,
           ("sequence", False): SequenceRunner, ("sequence", True): HostSequenceRunner}


class NaNError(RuntimeError):
    pass


def build(cfg: Config):
    """The environment (for host-stepped ones: the factory of one env) and the runner."""
    env = make(cfg.env, **env_options(cfg))
    runner = RUNNERS[ALGORITHMS[cfg.algo].learner, is_host(cfg.env)](env, None, cfg)
    runner.algo = ALGORITHMS[cfg.algo](runner.spec, cfg, runner.total_updates)
    return env, runner


class Experiment:
    """Holds the compiled functions of one config; ``run`` trains (or resumes) to the end."""

    def __init__(self, cfg: Config, run_dir: str | os.PathLike | None = None, quiet: bool = False):
        self.cfg = cfg
        self.env, self.runner = build(cfg)
        self.schedule = self.runner.schedule
        self.quiet = quiet
        if run_dir is None:
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            name = cfg.name or f"{cfg.algo}_{cfg.env.replace('/', '_')}_{stamp}"
            run_dir = Path(cfg.run_dir) / name
        self.run_dir = Path(run_dir)
        self.loop = self.runner.compile(len(cfg.seeds))
        algo = self.runner.algo
        self.csv_fields = EVAL_FIELDS + [c for m in algo.metrics for c in (m, *(
            f"{m}_{i}" for i in range(algo.n if m in algo.per_agent_metrics else 0)))]

    # ------------------------------------------------------------------ state
    def seed_keys(self):
        return jnp.stack([jax.random.PRNGKey(s) for s in self.cfg.seeds])

    def eval_keys(self, blocks_done: int):
        # depends only on the seed and the evaluation point
        return jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s ^ 0x5EED), blocks_done) for s in self.cfg.seeds])

    def _ckpt_paths(self):
        """The checkpoint and the one before it (kept to fall back to)."""
        return self.run_dir / "checkpoint.npz", self.run_dir / "checkpoint.prev.npz"

    def save_checkpoint(self, rs, progress: dict):
        """One file holds the state and its progress record, written to a temporary name and
        renamed into place, so the two always belong together; the previous checkpoint is
        kept as checkpoint.prev.npz."""
        current, previous = self._ckpt_paths()
        tmp = _write_tree(current, rs, progress=np.array(json.dumps(progress)))
        if current.exists():
            os.replace(current, previous)
        os.replace(tmp, current)
        fd = os.open(self.run_dir, os.O_RDONLY)  # the renames themselves survive a power loss
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _progress(self, data) -> dict:
        """The progress record inside an opened checkpoint (checkpoints written before
        2026-12-06 kept it beside, in checkpoint.json)."""
        if "progress" in data:
            return json.loads(str(data["progress"]))
        return json.loads((self.run_dir / "checkpoint.json").read_text())

    def read_progress(self) -> tuple[dict | None, Path | None]:
        """The progress record of the newest readable checkpoint (reads only that small member),
        and its path; a broken newer one is skipped with a warning."""
        for path in self._ckpt_paths():
            if path.exists():
                try:
                    with _open_checkpoint(path) as data:
                        return self._progress(data), path
                except Exception as err:  # a torn or foreign file: any reader error
                    warnings.warn(f"checkpoint {path} is unreadable ({type(err).__name__}: {err}); trying the previous one")
        return None, None

    def load_checkpoint(self):
        """(runner state, progress) of the newest checkpoint that loads whole, falling back to the
        previous one with a warning; (None, None) where there is none."""
        template = self.loop.template(self.seed_keys())
        errors = []
        for path in self._ckpt_paths():
            if not path.exists():
                continue
            try:
                with _open_checkpoint(path) as data:
                    progress = self._progress(data)
                    rs = _load_tree(data, template)
                return rs, progress
            except Exception as err:  # a torn or foreign file: any reader error
                errors.append(f"{path}: {type(err).__name__}: {err}")
                warnings.warn(f"checkpoint {path} cannot be loaded ({type(err).__name__}: {err}); trying the previous one")
        if errors:
            raise ValueError(f"no loadable checkpoint in {self.run_dir} ({'; '.join(errors)}); pass --no-resume to "
                             "start the run again")
        return None, None

    def save_policy(self, algo_state, blocks_done: int, env_steps: int):
        """keep_policies: the algorithm state of all seeds at the evaluation at ``env_steps``."""
        path = self.run_dir / "policies" / f"{env_steps}.npz"
        path.parent.mkdir(exist_ok=True)
        _save_tree(path, algo_state, blocks_done=blocks_done)

    def load_policy(self, env_steps: int):
        """The algorithm state kept at the evaluation at ``env_steps``, and the blocks done then."""
        path = self.run_dir / "policies" / f"{env_steps}.npz"
        if not path.exists():
            kept = sorted(int(p.stem) for p in path.parent.glob("*.npz"))
            raise FileNotFoundError(
                f"no policy kept at env step {env_steps} in {self.run_dir}: "
                + (f"kept steps are {kept}" if kept else "the run did not keep policies (keep_policies=false)"))
        with np.load(path) as data:
            return _load_tree(data, self.loop.template(self.seed_keys()).algo), int(data["blocks_done"])

    # ------------------------------------------------------------------ logging
    def _write_outputs(self, rows: list[dict]):
        with open(self.run_dir / "metrics.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.csv_fields)
            w.writeheader()
            w.writerows({k: row.get(k, "") for k in self.csv_fields} for row in rows)
        self._write_marl_eval(rows)

    def _write_marl_eval(self, rows):
        family, task = self.cfg.env.split("/", 1)
        per_seed: dict = {}
        for row in rows:
            per_seed.setdefault(f"seed_{row['seed']}", []).append({"step_count": row["env_steps"], "return": row["eval_returns"]})
        doc = {family: {task: {self.cfg.algo: {seed: marl_eval_seed(e) for seed, e in per_seed.items()}}}}
        (self.run_dir / "marl_eval.json").write_text(json.dumps(doc))

    def _tensorboard(self, rows):
        """TensorBoard events of every row, written anew (a resumed or extended run's earlier
        events would otherwise be shown twice)."""
        from tensorboardX import SummaryWriter

        shutil.rmtree(self.run_dir / "tb", ignore_errors=True)
        for seed in self.cfg.seeds:
            with SummaryWriter(str(self.run_dir / "tb" / f"seed_{seed}")) as w:
                for row in (r for r in rows if r["seed"] == seed):
                    for k in self.csv_fields[3:]:
                        if row.get(k, "") != "":
                            w.add_scalar(k, row[k], row["env_steps"])

    # ------------------------------------------------------------------ run
    def _rows(self, blocks_done, wall, ret, won, metrics):
        ret, won = np.asarray(ret), np.asarray(won)
        rows = []
        for s, seed in enumerate(self.cfg.seeds):
            row = {
                "seed": seed,
                "env_steps": self.schedule.env_steps(blocks_done, self.cfg.n_envs) if blocks_done >= 0 else 0,
                "wall_time": round(wall, 3),
                "eval_return_mean": float(ret[s].mean()),
                "eval_return_std": float(ret[s].std()),
                "eval_win_rate": float(won[s].mean()),
                "eval_returns": [float(x) for x in ret[s]],
            }
            if metrics is not None:
                for k, v in metrics.items():
                    v = np.asarray(v)[s]
                    row[k] = float(np.mean(v))
                    if k in self.runner.algo.per_agent_metrics:
                        row.update({f"{k}_{i}": float(x) for i, x in enumerate(v)})
            rows.append(row)
        return rows

    def run(self, resume: bool = True):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with run_lock(self.run_dir):
            try:
                return self._run(resume)
            finally:
                self.runner.close()  # host-stepped envs' worker processes

    def _record_versions(self, resumed: bool):
        """versions.json at the start of a run; resuming with other versions warns (the run
        goes on, but its numbers will not be those of an uninterrupted run)."""
        path, now = self.run_dir / "versions.json", package_versions()
        if resumed and path.exists():
            then = json.loads(path.read_text())
            changed = [f"{k} {then.get(k)} -> {now.get(k)}" for k in sorted(set(then) | set(now))
                       if then.get(k) != now.get(k)]
            if changed:
                warnings.warn(f"resuming {self.run_dir} with other package versions than it started with "
                              f"({', '.join(changed)}): its numbers will differ from an uninterrupted run's")
            return
        path.write_text(json.dumps(now, indent=1))

    def _check_resumable(self, saved: Config):
        """A checkpoint resumes under its own config, or under the same config with a total_steps
        no smaller than what it has trained (extending a run), except where a schedule spans the
        run (the algorithm's ``spans_run`` keys: decaying learning rates, ...). Reads only the
        configs and the checkpoint's progress record, not its arrays."""
        old, new = saved.flat(), self.cfg.flat()
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if not diff:
            return
        spans_run = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k in ALGORITHMS[self.cfg.algo].spans_run
                     if (v := new[k]) not in (False, None)]  # schedules over total_steps
        if diff == ["total_steps"] and not spans_run:
            progress, _ = self.read_progress()
            done = 0 if progress is None else progress["blocks_done"]
            if done > self.schedule.blocks:
                raise ValueError(f"{self.run_dir} has trained {self.schedule.env_steps(done, self.cfg.n_envs)} env "
                                 f"steps, more than total_steps={self.cfg.total_steps}; a run can be extended, not shortened")
            return
        why = (f"{', '.join(spans_run)}: its schedule spans total_steps, so the run cannot be extended"
               if diff == ["total_steps"] else
               "differs in " + ", ".join(f"{k} ({old.get(k)!r} there, {new.get(k)!r} here)" for k in diff))
        raise ValueError(f"{self.run_dir} holds a checkpoint of a run whose config {why}; resume it with its own "
                         "config (only total_steps may grow), or pass --no-resume / another --run-dir")

    def _run(self, resume: bool):
        cfg, sch = self.cfg, self.schedule
        self.run_dir.mkdir(parents=True, exist_ok=True)
        saved = self.run_dir / "config.yaml"
        resuming = resume and any(p.exists() for p in self._ckpt_paths()) and saved.exists()
        if resuming:
            self._check_resumable(load_run(self.run_dir))
        rs, progress = self.load_checkpoint() if resuming else (None, None)
        saved.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        self._record_versions(resumed=rs is not None)
        t_start = time.perf_counter()
        if rs is None:
            # a fresh start (or --no-resume) owns the directory: another run's checkpoints must not
            # be resumed or fallen back to under this config
            for stale in (*self._ckpt_paths(), self.run_dir / "checkpoint.json", self.run_dir / "checkpoint.tmp.npz"):
                stale.unlink(missing_ok=True)
            rs = self.loop.init(self.seed_keys())
            # evaluation of the initial policy, at env step 0
            ret, won = self.loop.evaluate(rs.algo, self.eval_keys(0))
            if cfg.keep_policies:
                self.save_policy(rs.algo, 0, 0)
            rows = self._rows(-1, 0.0, ret, won, None)
            rs = self.loop.warmup(rs)
            progress = {"blocks_done": 0, "wall_offset": 0.0, "rows": rows, "evals": 0}
        else:
            rs = self.loop.resumed(rs, progress["blocks_done"])
            if not self.quiet:
                print(f"meharl: resuming {self.run_dir} from env step {progress['rows'][-1]['env_steps']}", flush=True)
        rows, blocks_done = progress["rows"], progress["blocks_done"]
        wall_offset = progress["wall_offset"] - t_start
        self._write_outputs(rows)
        bar = None
        if not self.quiet:
            from tqdm import tqdm

            bar = tqdm(total=cfg.total_steps, initial=sch.env_steps(blocks_done, cfg.n_envs), unit="step",
                       desc=f"{cfg.algo} {cfg.env} seeds={list(cfg.seeds)}", dynamic_ncols=True)
        evals = progress["evals"]
        self.timings = []  # (blocks, seconds) per chunk incl. its evaluation and logging; the first compiles
        while blocks_done < sch.blocks:
            t_chunk = time.perf_counter()
            n = min(sch.blocks_per_eval, sch.blocks - blocks_done)
            rs, metrics = self.loop.chunk(rs, n)
            metrics = jax.device_get(metrics)
            bad = [k for k, v in metrics.items() if not np.all(np.isfinite(v))]
            if bad:
                raise NaNError(
                    f"non-finite {', '.join(bad)} at env step {sch.env_steps(blocks_done + n, cfg.n_envs)}; "
                    f"the last good checkpoint ({self._ckpt_paths()[0]}, env step "
                    f"{sch.env_steps(blocks_done, cfg.n_envs)}) is kept"
                )
            blocks_done += n
            evals += 1
            ret, won = self.loop.evaluate(rs.algo, self.eval_keys(blocks_done))
            if cfg.keep_policies:
                self.save_policy(rs.algo, blocks_done, sch.env_steps(blocks_done, cfg.n_envs))
            wall = time.perf_counter() + wall_offset
            new_rows = self._rows(blocks_done, wall, ret, won, metrics)
            rows.extend(new_rows)
            self._write_outputs(rows)
            progress = {"blocks_done": blocks_done, "wall_offset": wall, "rows": rows, "evals": evals}
            if evals % cfg.checkpoint_every == 0 or blocks_done == sch.blocks:
                self.save_checkpoint(rs, progress)
            self.timings.append((n, time.perf_counter() - t_chunk))
            if bar is not None:
                bar.update(sch.env_steps(blocks_done, cfg.n_envs) - bar.n)
                bar.set_postfix(eval_return=f"{np.mean([r['eval_return_mean'] for r in new_rows]):.2f}")
        if bar is not None:
            bar.close()
        self._tensorboard(rows)
        plot_runs([self.run_dir], self.run_dir / "learning_curve.png", headline_metric(cfg.env))
        self.state = rs
        return rows


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """Own ``run_dir`` for the duration: an exclusive lock on run_dir/.lock, which the operating
    system releases when the process ends however it ends (a crashed owner leaves no stale
    lock). A second process is refused at once, with the owner's pid, host and start time."""
    with open(run_dir / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise ValueError(f"{run_dir} is in use by another training ({f.read().strip() or 'owner unknown'}); wait for "
                             "it to finish, or give another --run-dir") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since {_dt.datetime.now().isoformat(timespec='seconds')}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def train(overrides: dict | None = None, run_dir=None, resume: bool = True, quiet: bool = False):
    """Python entry point: ``train({"env": "matrix/hasac_3x3", "seeds": (0, 1)})``.
    Returns the :class:`Experiment` (``.run_dir``, ``.rows``, ``.state``)."""
    cfg = resolve(overrides)
    exp = Experiment(cfg, run_dir, quiet=quiet)
    exp.rows = exp.run(resume=resume)
    return exp


def package_versions() -> dict:
    """Python's version and those of the installed packages of VERSIONED."""
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def load_trained(run_dir, cfg: Config | None = None, step: int | None = None):
    """A saved run's trained algorithm state of all seeds, from its last checkpoint or, with
    ``step``, the policy kept at the evaluation at that env step (keep_policies).
    ``cfg``: the run's config (read from the run directory when not given).
    Returns (experiment, algorithm state, {"blocks_done", "env_steps"} of that point)."""
    exp = Experiment(load_run(run_dir) if cfg is None else cfg, run_dir, quiet=True)
    if step is not None:
        algo_state, blocks_done = exp.load_policy(step)
        return exp, algo_state, {"blocks_done": blocks_done, "env_steps": step}
    rs, progress = exp.load_checkpoint()
    if rs is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir} (expected checkpoint.npz)")
    return exp, rs.algo, {"blocks_done": progress["blocks_done"], "env_steps": progress["rows"][-1]["env_steps"]}


def evaluate_run(run_dir, eval_episodes: int | None = None, cfg: Config | None = None, step: int | None = None):
    """Re-evaluate a saved run's last checkpoint (or the policy kept at ``step``) with the
    deterministic policy, on other episodes than that point's training evaluation.
    ``cfg``: the run's config (read from the run directory when not given).
    Returns ({seed: (per-episode returns, per-episode won)}, {"blocks_done", "env_steps"})."""
    cfg = load_run(run_dir) if cfg is None else cfg
    if eval_episodes is not None:
        cfg = cfg.replace(eval_episodes=eval_episodes)
    exp, algo_state, where = load_trained(run_dir, cfg, step)
    ret, won = exp.loop.evaluate(algo_state, exp.eval_keys(where["blocks_done"] + 1))
    return {seed: (np.asarray(ret[s]), np.asarray(won[s])) for s, seed in enumerate(cfg.seeds)}, where


def _open_checkpoint(path: Path):
    """np.load of a checkpoint that refuses anything but an npz archive (np.load would try to
    read other bytes as a pickle)."""
    if not zipfile.is_zipfile(path):
        raise ValueError("not an npz archive (truncated or overwritten)")
    return np.load(path)


def _write_tree(path: Path, tree, **extra) -> Path:
    """A pytree's leaves (plus named extras) to a temporary file next to ``path``, flushed to
    disk; returns its name (rename it into place)."""
    tmp = path.with_suffix(".tmp.npz")
    with open(tmp, "wb") as f:
        np.savez(f, *[np.asarray(x) for x in jax.tree.leaves(tree)], **extra)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def _save_tree(path: Path, tree, **extra):
    """A pytree's leaves (plus named extras) to ``path``, atomically (write, then rename)."""
    os.replace(_write_tree(path, tree, **extra), path)


def _load_tree(data, template):
    """The pytree of ``template``'s structure from the opened file of :func:`_save_tree`. A
    leaf that differs from the template along one axis only is the replay's time axis, sized
    to the run (runners/offpolicy.py): zero-padded when the run was extended, cut when it was
    saved larger (by a version that allocated all of ``buffer_size``). Both keep its contents:
    a replay sized to its run never wraps, so its filled part lies at the start."""
    shapes = jax.tree.leaves(template)
    leaves = []
    for i, want in enumerate(shapes):
        x = data[f"arr_{i}"]
        if x.shape != want.shape:
            grow = [w - h for h, w in zip(x.shape, want.shape)]
            if len(x.shape) != len(want.shape) or sum(g != 0 for g in grow) != 1:
                raise ValueError(f"leaf {i} has shape {x.shape}, this config needs {want.shape}")
            x = np.pad(x, [(0, max(g, 0)) for g in grow])[tuple(slice(0, w) for w in want.shape)]
        leaves.append(jnp.asarray(x, want.dtype))
    if f"arr_{len(shapes)}" in data:
        raise ValueError(f"it holds more arrays than this config's state ({len(shapes)})")
    return jax.tree.unflatten(jax.tree.structure(template), leaves)
