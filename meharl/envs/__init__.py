"""Environment registry: ``make("family/task", **options)``."""
from __future__ import annotations

import difflib

from meharl.envs.core import AgentSpec, EnvSpec, TimeStep, step_autoreset
from meharl.envs.matrix import HASAC_INITIAL_POLICY, PAYOFFS, DifferentiableGame, MatrixGame
from meharl.envs.mpe import MPE, TASKS as MPE_TASKS


def _registry():
    reg = {f"matrix/{name}": (lambda name=name: MatrixGame(name)) for name in PAYOFFS}
    reg["matrix/differentiable"] = DifferentiableGame
    for task in MPE_TASKS:
        reg[f"mpe/{task}"] = lambda task=task, **kw: MPE(task, continuous=True, **kw)
        reg[f"mpe/{task}_discrete"] = lambda task=task: MPE(task, continuous=False)
    return reg


ENVS = _registry()
ENV_NAMES = tuple(sorted(ENVS))


def check_env_name(name: str) -> None:
    if name not in ENVS:
        close = difflib.get_close_matches(name, ENV_NAMES, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown env {name!r}.{hint} Valid choices: {', '.join(ENV_NAMES)}")


def make(name: str, **options):
    """``options``: environment options, e.g. ``action_map`` of continuous MPE."""
    check_env_name(name)
    return ENVS[name](**options)


__all__ = [
    "AgentSpec", "EnvSpec", "TimeStep", "step_autoreset", "make", "ENV_NAMES", "check_env_name",
    "HASAC_INITIAL_POLICY", "PAYOFFS",
]
