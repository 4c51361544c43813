"""Typed, validated run configuration in three sections: run, environment, algorithm.

The command line is flat ``key=value``. :func:`resolve` routes every key to the section that
owns it: :class:`RunConfig` (what to run, for how long, where the results go),
:class:`EnvConfig` (environment options) or the chosen algorithm's own config class
(``ALGORITHMS[algo].Config``, declared next to the algorithm). A key that no section of the
chosen algorithm owns is refused before anything is compiled, naming the algorithm and the
nearest valid keys. Values resolve as defaults <- the algorithm's preset for the task
(``meharl/presets.py``) <- the user's overrides, and are validated from the fields'
metadata (:func:`key`). ``config.yaml`` is written in the same three sections.

Keys are unique across the sections of one algorithm, so a resolved :class:`Config` also
reads flat: ``cfg.alpha`` is ``cfg.algorithm.alpha``, ``cfg.seeds`` is ``cfg.run.seeds``.
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import math
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from meharl.envs import ENV_NAMES, check_env_name
from meharl.envs.mamujoco import OBSERVATIONS as MAMUJOCO_OBSERVATIONS
from meharl.envs.spec import ACTION_MAPS

VECTOR_ENVS = ("async", "sync")
SECTIONS = ("run", "environment", "algorithm")

# checks a key's value must pass: name -> (predicate, the words of the error)
CHECKS = {
    "positive": (lambda v: v > 0, "must be > 0"),
    "nonneg": (lambda v: v >= 0, "must be >= 0"),
    "unit": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "prob": (lambda v: 0 <= v <= 1, "must be in [0, 1]"),
}


def key(default, help: str, check: str | None = None, choices: tuple | None = None):
    """A config field: its default, a one-line description (shown by ``meharl list``), and
    the check (``CHECKS``) or the valid choices its value must pass."""
    meta = {"help": help, "check": check, "choices": choices}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunConfig:
    algo: str = key("hasac", "the algorithm (`meharl list`)")
    env: str = key("mpe/simple_spread", "the task, family/name (`meharl list`)")
    seeds: tuple[int, ...] = key((0,), "seeds trained together in one process (vmapped), e.g. 0,1,2")
    total_steps: int = key(1_000_000, "env steps of the run, warmup included", "positive")
    eval_interval: int = key(25_000, "env steps between evaluations", "positive")
    eval_episodes: int = key(40, "episodes of each evaluation (deterministic policy)", "positive")
    checkpoint_every: int = key(1, "evaluations between checkpoints", "positive")
    keep_policies: bool = key(False, "also keep the algorithm state of every evaluation in policies/<env step>.npz")
    run_dir: str = key("runs", "parent folder of run directories")
    name: typing.Optional[str] = key(None, "run directory name (default: <algo>_<env>_<time>)")


@dataclass(frozen=True)
class EnvConfig:
    mpe_action_map: str = key("reference", "continuous MPE: 'reference' (HARL code: clip) or 'box' (affine onto the Box)",
                              choices=ACTION_MAPS)
    mamujoco_obs: str = key("local", "Multi-Agent MuJoCo observations: 'local' joints or 'reference' (the whole robot)",
                            choices=MAMUJOCO_OBSERVATIONS)
    mamujoco_obsk: int = key(1, "Multi-Agent MuJoCo, local: joints an agent observes beyond its own", "nonneg")
    vector_env: str = key("async", "host-stepped envs: 'async' (worker processes) or 'sync' (this process)",
                          choices=VECTOR_ENVS)
    env_workers: int = key(0, "vector_env=async: worker processes sharing the envs (0: one per usable CPU core)",
                           "nonneg")


def _algorithms():
    from meharl.algorithms import ALGORITHMS  # the registry imports the algorithms, which import this module

    return ALGORITHMS


def _unknown(kind: str, name: str, choices) -> ValueError:
    close = difflib.get_close_matches(name, list(choices), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ValueError(f"unknown {kind} {name!r}.{hint} Valid choices: {', '.join(sorted(choices))}")


def check_algo(algo: str):
    algos = _algorithms()
    if algo not in algos:
        raise _unknown("algorithm", algo, algos)
    return algos[algo]


def fields(cls) -> dict:
    return {f.name: f for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class Config:
    """A resolved config: the three sections, readable flat (see the module docstring)."""

    run: RunConfig
    environment: EnvConfig
    algorithm: typing.Any  # the algorithm's Config dataclass

    def __getattr__(self, name):
        for section in SECTIONS:
            part = object.__getattribute__(self, section)
            if name in fields(type(part)):
                return getattr(part, name)
        raise AttributeError(f"no config key {name!r}")

    def sections(self) -> dict:
        return {name: getattr(self, name) for name in SECTIONS}

    def to_dict(self) -> dict:
        """{section: {key: value}}, as config.yaml stores it (tuples as lists)."""
        return {name: {k: list(v) if isinstance(v := getattr(part, k), tuple) else v for k in fields(type(part))}
                for name, part in self.sections().items()}

    def flat(self) -> dict:
        return {k: v for part in self.to_dict().values() for k, v in part.items()}

    def replace(self, **changes) -> "Config":
        """A copy with flat keys changed, re-validated."""
        if changes.get("algo", self.run.algo) != self.run.algo:
            raise ValueError("replace() keeps the algorithm; resolve a new config for another one")
        routed = route(self.run.algo, changes)
        parts = {name: dataclasses.replace(part, **{k: _coerce(type(part), k, v) for k, v in routed[name].items()})
                 for name, part in self.sections().items()}
        return validate(Config(**parts))


def section_classes(algo: str) -> dict:
    return {"run": RunConfig, "environment": EnvConfig, "algorithm": check_algo(algo).Config}


def route(algo: str, flat: dict) -> dict:
    """Flat keys -> {section: {key: value}} for ``algo``; an unknown key raises, naming the
    algorithm, the nearest valid keys, and the algorithms that do own it."""
    classes = section_classes(algo)
    out: dict = {name: {} for name in classes}
    for k, v in flat.items():
        owner = next((name for name, cls in classes.items() if k in fields(cls)), None)
        if owner is None:
            valid = [f for cls in classes.values() for f in fields(cls)]
            close = difflib.get_close_matches(k, valid, n=3)
            others = sorted(a for a, cls in _algorithms().items() if k in fields(cls.Config))
            raise ValueError(
                f"unknown config key {k!r} for algo={algo}."
                + (f" Did you mean {', '.join(close)}?" if close else "")
                + (f" ({k} is a key of {', '.join(others)})" if others else "")
                + f" Valid choices: {', '.join(sorted(valid))}")
        out[owner][k] = v
    return out


def _coerce(cls, name: str, value):
    """Parse a command-line string (or pass a Python value) into the field's type."""
    hints = typing.get_type_hints(cls)[name]
    shown = getattr(hints, "__name__", str(hints))
    optional = typing.get_origin(hints) is typing.Union and type(None) in typing.get_args(hints)
    if optional:
        hints = next(t for t in typing.get_args(hints) if t is not type(None))
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
    elif value is None:
        raise ValueError(f"invalid value None for {name}: expected {shown}")
    origin = typing.get_origin(hints)
    try:
        if origin is tuple:
            elem = typing.get_args(hints)[0]
            if isinstance(value, str):
                value = [v for v in value.strip("[]()").split(",") if v.strip()]
            return tuple(elem(v) for v in value)
        if hints is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes"):
                    return True
                if value.lower() in ("false", "0", "no"):
                    return False
                raise ValueError
            return bool(value)
        if hints is int and isinstance(value, (str, float)):
            f = float(value)
            if f != int(f):
                raise ValueError
            return int(f)
        return hints(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"invalid value {value!r} for {name}: expected {shown}") from None


def _check_fields(part) -> None:
    """Every field's declared check and choices; floats must be finite."""
    for f in dataclasses.fields(part):
        v = getattr(part, f.name)
        values = v if isinstance(v, tuple) else (v,)
        if any(isinstance(x, float) and not math.isfinite(x) for x in values):
            raise ValueError(f"invalid {f.name}={v!r}: must be a finite number")
        choices, check = f.metadata.get("choices"), f.metadata.get("check")
        if choices is not None and v not in choices:
            raise ValueError(f"invalid {f.name} {v!r}. Valid choices: {', '.join(choices)}")
        if check is not None and v is not None:
            ok, words = CHECKS[check]
            if not all(ok(x) for x in values):
                raise ValueError(f"invalid {f.name}={v!r}: {words}")


def validate(cfg: Config) -> Config:
    check_env_name(cfg.run.env)
    for part in cfg.sections().values():
        _check_fields(part)
    if not cfg.run.seeds or len(set(cfg.run.seeds)) != len(cfg.run.seeds):
        raise ValueError(f"invalid seeds={cfg.run.seeds!r}: give distinct integers, e.g. seeds=0,1,2")
    cfg.algorithm.validate()  # the algorithm's own cross-key checks
    return cfg


def preset(algo: str, env: str) -> dict:
    """The flat values of ``algo``'s preset table (``meharl/presets.py``) that match ``env``,
    later entries overriding earlier ones."""
    from meharl.presets import PRESETS

    out: dict = {}
    for p in PRESETS.get(algo, ()):
        if fnmatch.fnmatch(env, p.pattern):
            out.update(p.values)
    return out


def build_config(algo: str, flat: dict) -> Config:
    routed = route(algo, flat)
    parts = {name: cls(**{k: _coerce(cls, k, v) for k, v in routed[name].items()})
             for name, cls in section_classes(algo).items()}
    return validate(Config(**parts))


def resolve(overrides: dict | None = None) -> Config:
    """Defaults <- preset(algo, env) <- overrides, routed and validated. Raises ValueError
    naming the bad key or value and the valid choices."""
    overrides = dict(overrides or {})
    algo = str(overrides.get("algo", RunConfig.algo))
    check_algo(algo)
    route(algo, overrides)  # unknown keys fail before the env name is looked at
    env = str(overrides.get("env", RunConfig.env))
    check_env_name(env)
    return build_config(algo, {**preset(algo, env), **overrides})


def parse_overrides(args: list[str]) -> dict:
    out = {}
    for a in args:
        if "=" not in a:
            raise ValueError(f"invalid argument {a!r}: expected key=value (`meharl list` shows the keys)")
        k, v = a.split("=", 1)
        out[k.strip().replace("-", "_")] = v
    return out


def from_dict(d: dict) -> Config:
    """Rebuild a saved config (config.yaml) exactly, without re-applying presets. Reads the
    sectioned form and the flat one of runs saved before sections existed."""
    flat = {k: v for part in d.values() for k, v in part.items()} if set(d) <= set(SECTIONS) else dict(d)
    return build_config(str(flat.get("algo", RunConfig.algo)), flat)


def load_run(run_dir) -> Config:
    """The config a run directory was trained with (its config.yaml)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (it has no config.yaml)")
    return from_dict(yaml.safe_load(path.read_text()))


def env_options(cfg: Config) -> dict:
    """The options of ``envs.make`` that come from the config."""
    family = cfg.run.env.split("/", 1)[0]
    if family in ("mpe", "pz_mpe") and not cfg.run.env.endswith("_discrete"):
        return {"action_map": cfg.environment.mpe_action_map}
    if family == "mamujoco":
        return {"obsk": cfg.environment.mamujoco_obsk, "obs": cfg.environment.mamujoco_obs}
    return {}


__all__ = ["load_run", "Config", "RunConfig", "EnvConfig", "key", "resolve", "parse_overrides", "from_dict", "preset", "ENV_NAMES"]
