"""``meharl sweep``: many configs, each trained by ``meharl train`` in its own run directory
under one sweep directory.

    meharl sweep algo=hasac,happo env=mpe/simple_spread,smax/3m seeds=0-4 alpha=0.1,0.5 [--workers 2]

A grid is the product of every key's alternatives (``key=v1,v2``; a key whose value is itself
a list, such as ``hidden_sizes``, separates its alternatives with ``:``:
``hidden_sizes=64,64:256,256``), or of a YAML file's lists (``--file``). The seeds are not a
grid axis: every config trains all of them together in one process (vmapped), ``seeds=0-4``
meaning 0,1,2,3,4. A key that an algorithm of the grid does not have is left out of its runs
(their alternatives collapse into one run); a key no algorithm of the grid has is an error.

The sweep directory holds one run directory per config and ``sweep.json``, the index: every
run's overrides, status (pending, running, done, failed, invalid), attempts, wall time,
error and where it ran. Running the same command again skips the runs that are done and
resumes the others from their checkpoints (``meharl train``'s exact resume): a sweep killed at
any point loses nothing. A run whose process dies (killed, out of memory, a lost Ray node) is retried
``--retries`` times, each time resuming; a run with an invalid config is reported and the
others go on.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import typing
from pathlib import Path

import yaml

INDEX = "sweep.json"
TUPLE_ALTERNATIVES = ":"
STATUSES = ("pending", "running", "done", "failed", "invalid")
CONFIG_ERROR = 2  # meharl's exit status for a bad config or input: retrying cannot help
PARENT = "MEHARL_SWEEP_PARENT"  # the pid a sweep's training process dies with


@dataclasses.dataclass
class Run:
    name: str
    overrides: dict  # key -> value as on the command line
    status: str = "pending"
    attempts: int = 0
    wall_s: float = 0.0
    error: typing.Optional[str] = None
    pid: typing.Optional[int] = None  # of its training process, while it runs
    node: typing.Optional[str] = None  # where its last attempt ran: the host (with Ray, also the node id)


# ---------------------------------------------------------------------------------------
# the grid


@functools.lru_cache(maxsize=None)
def _keys_of(algo: str) -> dict:
    """key -> type of every key ``algo`` has (run, environment and algorithm sections)."""
    from meharl.config import section_classes

    return {k: t for cls in section_classes(algo).values() for k, t in typing.get_type_hints(cls).items()
            if k in {f.name for f in dataclasses.fields(cls)}}


def _is_list_valued(types) -> bool:
    hints = [typing.get_args(t) if typing.get_origin(t) is typing.Union else (t,) for t in types]
    return any(typing.get_origin(h) is tuple for group in hints for h in group)


def _seeds(text: str) -> str:
    """``0-4`` -> ``0,1,2,3,4``; lists and ranges mixed: ``0-2,7``."""
    out = []
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(-?\d+)\s*-\s*(-?\d+)\s*", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ValueError(f"invalid seeds range {part!r}: give LO-HI with LO <= HI, e.g. seeds=0-4")
            out += [str(s) for s in range(lo, hi + 1)]
        elif part.strip():
            out.append(part.strip())
    return ",".join(out)


def parse_grid(args: list[str]) -> dict[str, list[str]]:
    """``key=v1,v2`` arguments -> {key: [alternatives]} (see the module docstring)."""
    from meharl.config import parse_overrides

    raw = parse_overrides(args)
    algos = raw.get("algo", "hasac").split(",")
    grid = {}
    for k, v in raw.items():
        if k == "seeds":
            grid[k] = [_seeds(v)]
            continue
        types = [t for a in algos if a in _algorithms() and (t := _keys_of(a).get(k)) is not None]
        sep = TUPLE_ALTERNATIVES if _is_list_valued(types) else ","
        grid[k] = [x.strip() for x in v.split(sep) if x.strip()]
        if not grid[k]:
            raise ValueError(f"invalid {k}={v!r}: give at least one value")
    return grid


def load_grid_file(path) -> dict[str, list[str]]:
    """A YAML mapping key -> value or list of values (a list-valued key's alternatives: a list
    of lists)."""
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"invalid sweep file {path}: expected a mapping of config keys to values or lists of values")

    def text(v):
        return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)

    grid = {}
    for k, v in data.items():
        if k == "seeds":
            grid[k] = [_seeds(text(v))]
        else:
            grid[k] = [text(x) for x in v] if isinstance(v, list) else [text(v)]
    return grid


def _algorithms():
    from meharl.algorithms import ALGORITHMS

    return ALGORITHMS


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")


def expand(grid: dict[str, list[str]]) -> list[Run]:
    """The runs of a grid, in grid order, each config once. Checks every key and every run's
    config now, before anything trains: an unknown key stops the sweep, an invalid config makes
    its run ``invalid`` (the message in ``error``)."""
    from meharl.config import check_algo, resolve, route

    grid = {k.replace("-", "_"): v for k, v in grid.items()}
    algos = grid.get("algo", ["hasac"])
    for a in algos:
        check_algo(a)
    for k in grid:
        if not any(k in _keys_of(a) for a in algos):
            route(algos[0], {k: grid[k][0]})  # raises with the close matches and the valid keys
    named = [k for k, v in grid.items() if len(v) > 1 and k not in ("algo", "env")]
    runs, seen = [], set()
    for combo in itertools.product(*grid.values()):
        overrides = dict(zip(grid, combo))
        algo = overrides.get("algo", "hasac")
        overrides = {k: v for k, v in overrides.items() if k in _keys_of(algo)}
        ident = json.dumps(overrides, sort_keys=True)
        if ident in seen:
            continue
        seen.add(ident)
        name = "__".join(_slug(part) for part in (algo, overrides.get("env", ""),
                                                  *(f"{k}={overrides[k]}" for k in named if k in overrides)) if part)
        run = Run(name, overrides)
        try:
            resolve(overrides)
        except ValueError as err:
            run.status, run.error = "invalid", str(err)
        runs.append(run)
    names = [r.name for r in runs]
    if len(set(names)) != len(names):  # distinct configs whose names collide after _slug
        for i, r in enumerate(runs):
            r.name = f"{i:03d}__{r.name}"
    return runs


def default_dir(grid: dict) -> Path:
    """runs/sweep-<hash of the grid>: the same command finds the same directory again."""
    digest = hashlib.sha1(json.dumps(grid, sort_keys=True).encode()).hexdigest()[:10]
    return Path("runs") / f"sweep-{digest}"


# ---------------------------------------------------------------------------------------
# running


class Sweep:
    """The runs of one sweep directory and its index."""

    def __init__(self, runs: list[Run], sweep_dir, command: str, retries: int = 2, quiet: bool = False):
        self.dir, self.command, self.retries, self.quiet = Path(sweep_dir), command, retries, quiet
        self.runs = runs
        self.lock = threading.Lock()
        previous = self.read_index(self.dir)
        for run in runs:  # a run done before (its directory still there) is not run again
            old = previous.get(run.name)
            if old and old["overrides"] == run.overrides and old["status"] == "done" and (self.dir / run.name).is_dir():
                run.status, run.attempts, run.wall_s = "done", old["attempts"], old["wall_s"]

    @staticmethod
    def read_index(sweep_dir) -> dict:
        path = Path(sweep_dir) / INDEX
        if not path.exists():
            return {}
        return {r["name"]: r for r in json.loads(path.read_text())["runs"]}

    def write_index(self):
        path = self.dir / INDEX
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"command": self.command, "runs": [dataclasses.asdict(r) for r in self.runs]}, indent=1))
        os.replace(tmp, path)

    def _say(self, run: Run, what: str):
        if not self.quiet:
            done = sum(r.status in ("done", "failed", "invalid") for r in self.runs)
            print(f"[{done}/{len(self.runs)}] {run.name}: {what}", flush=True)

    def _set(self, run: Run, **changes):
        with self.lock:
            for k, v in changes.items():
                setattr(run, k, v)
            self.write_index()

    def train_command(self, run: Run) -> list[str]:
        """``meharl train``'s arguments for ``run`` (after ``python -m meharl.cli``)."""
        return ["train", *(f"{k}={v}" for k, v in run.overrides.items()), "--run-dir", str(self.dir.absolute() / run.name)]

    def attempt(self, run: Run, log_path: Path) -> int:
        """One try of ``run`` in a child process; its exit status."""
        host = socket.gethostname()
        with open(log_path, "a") as log:
            proc = _spawn(self.train_command(run), log, host)
            self._set(run, pid=proc.pid, node=host)
            return proc.wait()

    def run_one(self, run: Run):
        """Train ``run``, retrying (and so resuming) when its process dies."""
        run_dir = self.dir / run.name
        run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            self._set(run, status="running", attempts=run.attempts + 1)
            self._say(run, f"running (attempt {run.attempts})")
            t = time.perf_counter()
            rc = self.attempt(run, run_dir / "sweep.log")
            wall = run.wall_s + time.perf_counter() - t
            if rc == 0:
                self._set(run, status="done", wall_s=round(wall, 1), error=None, pid=None)
                self._say(run, f"done in {wall:.0f} s")
                return
            tail = (run_dir / "sweep.log").read_text().strip().splitlines()[-1:] or [""]
            error = f"exit status {rc}: {tail[0]}"
            if rc == CONFIG_ERROR or run.attempts > self.retries:
                self._set(run, status="failed", wall_s=round(wall, 1), error=error, pid=None)
                self._say(run, f"failed ({error}; log: {run_dir / 'sweep.log'})")
                return
            self._set(run, wall_s=round(wall, 1), error=error)
            self._say(run, f"{error}; retrying from its checkpoint")

    def concurrency(self, workers: int, todo: int) -> int:
        return workers

    def run(self, workers: int = 1) -> bool:
        """Train every run not done (``workers`` at a time); True when all are done."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.write_index()
        todo = [r for r in self.runs if r.status not in ("done", "invalid")]
        for r in self.runs:
            if r.status == "done":
                self._say(r, "done before, skipped")
            elif r.status == "invalid":
                self._say(r, f"invalid config, not run: {r.error}")
        bar = None
        if not self.quiet and todo:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), unit="run", desc="sweep", file=sys.stderr)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, self.concurrency(workers, len(todo)))) as pool:
            for future in concurrent.futures.as_completed([pool.submit(self.run_one, r) for r in todo]):
                future.result()
                if bar is not None:
                    bar.update()
        if bar is not None:
            bar.close()
        return all(r.status == "done" for r in self.runs)


def _spawn(args: list[str], log, where: str) -> subprocess.Popen:
    """``meharl train args`` in a child process that dies with this one (a sweep or Ray worker
    killed does not leave its training process running beside the retry that resumes it).
    Linux sends the parent-death signal when the spawning *thread* ends: the caller waits on
    the child in that thread (``Sweep.attempt``, ``_ray_train_process``)."""
    proc = subprocess.Popen([sys.executable, "-m", "meharl.cli", *args], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, PARENT: str(os.getpid())})
    log.write(f"sweep: attempt on {where}, pid {proc.pid}, nice {os.nice(0)}\n")
    log.flush()
    return proc


def die_with_parent():
    """In a sweep's training process: be killed when the process that started it dies
    (Linux's parent-death signal; elsewhere a no-op)."""
    parent = os.environ.pop(PARENT, None)
    if parent is None or not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(parent):  # it died before the signal was armed
        os._exit(1)


def _ray_train_process(args: list[str], log_path: str) -> tuple[int, str]:
    """A Ray task: ``meharl train args`` on the task's node; its exit status and where it ran."""
    import ray

    where = f"{socket.gethostname()} (ray node {ray.get_runtime_context().get_node_id()[:12]})"
    with open(log_path, "a") as log:
        return _spawn(args, log, where).wait(), where


class RaySweep(Sweep):
    """Every run a Ray task declaring its CPUs and GPUs, on a new local Ray instance (``address``
    "local", never a cluster found on this machine) or an existing cluster (its address, or
    "auto"); Ray schedules them as resources free up. On a cluster of several machines the
    sweep directory must be on a filesystem they share."""

    def __init__(self, *args, address: str = "local", cpus: float = 1, gpus: float = 0, **kwargs):
        try:
            import ray
        except ImportError:
            raise ValueError("--ray needs Ray, an optional extra: pip install 'meharl[ray]'") from None
        super().__init__(*args, **kwargs)
        self.ray, self.address = ray, address
        # our loop retries (and resumes) a run whose task died; Ray itself does not
        self.task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_ray_train_process)

    def concurrency(self, workers: int, todo: int) -> int:
        return todo  # Ray queues the tasks by their resources

    def attempt(self, run: Run, log_path: Path) -> int:
        try:
            rc, where = self.ray.get(self.task.remote(self.train_command(run), str(log_path.absolute())))
            self._set(run, node=where)
            return rc
        except self.ray.exceptions.RayError as err:  # the task's worker or node died
            with open(log_path, "a") as log:
                log.write(f"ray: {type(err).__name__}: {err}\n")
            return -1

    def run(self, workers: int = 1) -> bool:
        if self.address == "local":
            # Ray runs its workers, and so the training processes they start, at nice 15;
            # a sweep's runs are its work: run them at the sweep's own priority, as local
            # sweeps do (at 15 they starve beside any other busy process)
            os.environ.setdefault("RAY_worker_niceness", "0")
        self.ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        try:
            return super().run(workers)
        finally:
            self.ray.shutdown()
