"""Environment registry: ``make("family/task", **options)``.

JAX-native environments (``matrix``, ``mpe``, ``smax``) implement the functional protocol of
``core.py`` and run inside the compiled runner. Host-stepped environments (``mamujoco``,
``pz_mpe``, ``smac``, ``football``: :func:`is_host`) are Gymnasium envs over joint spaces (``host.py``)
stepped in worker processes; for them ``make`` returns a picklable factory of one env. Families are imported on first use, so that the registry (used by config
validation before anything is built) needs none of the optional packages, and the worker
processes of host-stepped environments never import JAX.
"""
from __future__ import annotations

import difflib
import importlib

from meharl.envs.spec import AgentSpec, EnvSpec

MATRIX_GAMES = ("hasac_3x3", "harl_example1", "soft_qmix_3x3", "climbing", "penalty")  # matrix.PAYOFFS
MPE_TASKS = ("simple_spread", "simple_reference", "simple_speaker_listener")
SMAX_MAPS = ("3m", "2s3z", "25m", "3s5z", "8m", "5m_vs_6m", "10m_vs_11m", "27m_vs_30m", "3s5z_vs_3s6z",
             "3s_vs_5z", "6h_vs_8z", "smacv2_5_units", "smacv2_10_units", "smacv2_20_units")
MAMUJOCO_TASKS = ("HalfCheetah-2x3", "HalfCheetah-3x2", "HalfCheetah-6x1", "Ant-2x4", "Ant-4x2", "Ant-8x1",
                  "Walker2d-2x3", "Walker2d-6x1", "Hopper-3x1", "Humanoid-9|8", "Humanoid-17x1",
                  "HumanoidStandup-17x1", "ManySegmentSwimmer-10x2")
SMAC_MAPS = ("3m", "8m", "25m", "2s3z", "3s5z", "5m_vs_6m", "8m_vs_9m", "10m_vs_11m", "27m_vs_30m", "3s5z_vs_3s6z",
             "3s_vs_5z", "6h_vs_8z", "MMM2", "corridor")
FOOTBALL_SCENARIOS = ("academy_3_vs_1_with_keeper", "academy_counterattack_easy", "academy_counterattack_hard",
                      "academy_pass_and_shoot_with_keeper", "academy_run_pass_and_shoot_with_keeper", "academy_corner")
HOST_FAMILIES = ("mamujoco", "pz_mpe", "smac", "football")
WIN_FAMILIES = ("smax", "smac", "football")  # battles won, goals scored: judged by eval_win_rate


def _registry():
    """name -> (module, factory name, keyword arguments)."""
    reg = {f"matrix/{name}": ("matrix", "MatrixGame", {"name": name}) for name in MATRIX_GAMES}
    reg["matrix/differentiable"] = ("matrix", "DifferentiableGame", {})
    reg["matrix/ader_path"] = ("matrix", "PathGame", {})
    for task in MPE_TASKS:
        for family, module, factory in (("mpe", "mpe", "MPE"), ("pz_mpe", "pettingzoo", "mpe2_env")):
            reg[f"{family}/{task}"] = (module, factory, {"task": task, "continuous": True})
            reg[f"{family}/{task}_discrete"] = (module, factory, {"task": task, "continuous": False})
    for m in SMAX_MAPS:
        reg[f"smax/{m}"] = ("smax", "SMAX", {"map_name": m})
    for m in SMAC_MAPS:
        reg[f"smac/{m}"] = ("smac", "smac_env", {"map_name": m})
    for scenario in FOOTBALL_SCENARIOS:
        reg[f"football/{scenario}"] = ("football", "football_env", {"scenario": scenario})
    for task in MAMUJOCO_TASKS:
        reg[f"mamujoco/{task}"] = ("mamujoco", "mamujoco_env", {"task": task})
    return reg


ENVS = _registry()
ENV_NAMES = tuple(sorted(ENVS))  # the built-in ones
_REGISTERED: dict = {}  # name -> factory of one host-stepped env, see register()


def check_env_name(name: str) -> None:
    if name not in ENVS and name not in _REGISTERED:
        names = sorted([*ENV_NAMES, *_REGISTERED])
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown env {name!r}.{hint} Valid choices: {', '.join(names)}")


def register(name: str, make_env) -> None:
    """Make your own host-stepped environment trainable by name (``train({"env": name})``).
    ``make_env()`` returns one :class:`meharl.envs.host.JointEnv` (or any Gymnasium env with the
    same joint spaces and an ``env_spec``); it must be picklable (a module-level function or a
    ``functools.partial`` of one) for ``vector_env=async``. Presets apply by name pattern."""
    if name.count("/") != 1 or name in ENVS:
        raise ValueError(f"invalid env name {name!r}: use a new 'family/task' name")
    _REGISTERED[name] = make_env


def headline_metric(name: str) -> str:
    """The metrics.csv column a run of ``name`` is judged by: the win (score) rate where the
    task has wins, else the evaluation return."""
    return "eval_win_rate" if name.split("/", 1)[0] in WIN_FAMILIES else "eval_return_mean"


def is_host(name: str) -> bool:
    """Stepped on the host (Gymnasium vector env), not inside the compiled runner."""
    return name in _REGISTERED or name.split("/", 1)[0] in HOST_FAMILIES


def make(name: str, **options):
    """``options``: environment options, e.g. ``action_map`` of continuous MPE. For
    host-stepped environments, returns a picklable factory of one env."""
    check_env_name(name)
    if name in _REGISTERED:
        return _REGISTERED[name]
    module, factory, kwargs = ENVS[name]
    return getattr(importlib.import_module(f"meharl.envs.{module}"), factory)(**kwargs, **options)


def __getattr__(name):
    """The JAX parts, imported on first use (host envs' worker processes import this package)."""
    if name in ("TimeStep", "step_autoreset"):
        return getattr(importlib.import_module("meharl.envs.core"), name)
    if name in ("PAYOFFS", "HASAC_INITIAL_POLICY"):
        return getattr(importlib.import_module("meharl.envs.matrix"), name)
    raise AttributeError(f"module 'meharl.envs' has no attribute {name!r}")


__all__ = [
    "AgentSpec", "EnvSpec", "TimeStep", "step_autoreset", "make", "register", "ENV_NAMES", "check_env_name", "is_host",
    "HASAC_INITIAL_POLICY", "PAYOFFS",
]
