"""Typed, validated run configuration with per-(algorithm, task) presets.

A run is described by one flat :class:`Config`. ``resolve(overrides)`` starts from the
defaults, applies the preset of the chosen algorithm and environment (the papers' tuned
values, except where measured runs did better, commented in ``PRESETS``), then the user's
``key=value`` overrides, and validates everything before any JAX compilation happens. The
resolved config is saved with every run.
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import typing
from dataclasses import dataclass

from meharl.envs import ENV_NAMES, check_env_name
from meharl.envs.mamujoco import OBSERVATIONS as MAMUJOCO_OBSERVATIONS
from meharl.envs.spec import ACTION_MAPS

ALGOS = ("hasac",)
CRITIC_LOSSES = ("mse", "huber")
TEMPERATURES = ("per_agent", "shared")
DISCRETE_ACTOR_GRADIENTS = ("gumbel", "exact")
DISCRETE_TARGET_ENTROPY_OVER = ("action_space", "available")
VECTOR_ENVS = ("async", "sync")


@dataclass
class Config:
    # what to run
    algo: str = "hasac"
    env: str = "mpe/simple_spread"
    seeds: tuple[int, ...] = (0,)
    total_steps: int = 1_000_000  # env steps, warmup included
    mpe_action_map: str = "reference"  # continuous MPE: "reference" (HARL code) or "box" (envs/core.py)
    # Multi-Agent MuJoCo (envs/mamujoco.py): "local" joints, or "reference" (the whole robot, as the papers' code)
    mamujoco_obs: str = "local"
    mamujoco_obsk: int = 1  # local: joints an agent observes beyond its own
    vector_env: str = "async"  # host-stepped envs: "async" (worker processes) or "sync" (this process)
    # off-policy schedule (HARL off-policy runner semantics)
    n_envs: int = 20  # rollout threads
    warmup_steps: int = 10_000  # env steps of uniformly random actions before learning
    train_interval: int = 50  # vector steps between two blocks of updates
    update_per_train: float = 1.0  # a block is update_per_train * train_interval updates
    eval_interval: int = 25_000  # env steps between evaluations
    eval_episodes: int = 40
    checkpoint_every: int = 1  # evaluations between checkpoints
    # also keep the policy of every evaluation (the algorithm state, no replay buffer) in
    # policies/<env step>.npz, to re-evaluate any point of the run later (`meharl eval --step`)
    keep_policies: bool = False
    # networks
    hidden_sizes: tuple[int, ...] = (256, 256)
    feature_norm: bool = False  # LayerNorm on actor inputs (the reference uses it for discrete actors only)
    critic_layer_norm: bool = False  # LayerNorm in the critics' hidden layers (not in the reference)
    actor_lr: float = 5e-4
    critic_lr: float = 5e-4
    lr_decay: bool = False  # linear decay to 0 over the run
    # Polyak rate of an average of the actor's weights that evaluation plays instead of the
    # online actor (training still samples the online one); None: no average (algorithms/hasac.py)
    actor_polyak: typing.Optional[float] = None
    # HASAC (Algorithm 2 and the reference implementation's choices)
    gamma: float = 0.99
    polyak: float = 0.005
    buffer_size: int = 1_000_000
    batch_size: int = 1000
    n_step: int = 20
    alpha: float = 0.2  # fixed temperature, or the initial one when auto_alpha
    auto_alpha: bool = True  # Appendix H.1
    alpha_lr: float = 3e-4
    temperature: str = "per_agent"  # one temperature per agent, or one shared
    target_entropy: typing.Optional[float] = None  # None: the defaults documented in hasac.py
    discrete_target_entropy_ratio: float = 0.98  # discrete default target = ratio * log(n)
    # the ratio annealed linearly to this over the run (algorithms/hasac.py); None: constant
    discrete_target_entropy_ratio_final: typing.Optional[float] = None
    # n in the ratio's target: the size of the action space, or the actions available in each state
    discrete_target_entropy_over: str = "action_space"
    critic_loss: str = "mse"
    huber_delta: float = 10.0
    value_norm: bool = False
    share_param: bool = False
    fixed_order: bool = False
    mini_epochs: int = 1
    discrete_actor_gradient: str = "gumbel"  # or "exact" (see algorithms/hasac.py)
    init_policy: typing.Optional[tuple[float, ...]] = None  # discrete: initial policy of every agent
    # outputs
    run_dir: str = "runs"
    name: typing.Optional[str] = None

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in dataclasses.fields(self)}


FIELDS = {f.name: f for f in dataclasses.fields(Config)}

# The papers' tuned values. Later entries override earlier ones for the same key.
_MATRIX = dict(
    total_steps=6_000, n_envs=10, warmup_steps=500, train_interval=10, update_per_train=1.0,
    eval_interval=1_000, eval_episodes=10, hidden_sizes=(64, 64),
    buffer_size=10_000, batch_size=256, n_step=1, auto_alpha=False,
)
_SPREAD = dict(mpe_action_map="box", n_step=5, critic_layer_norm=True, gamma=0.95)
PRESETS: list[tuple[str, str, dict]] = [
    # HARL tuned_configs/pettingzoo_mpe/*/hasac: [256, 256], lr 5e-4, auto alpha, n_step 20,
    # batch 1000, 20 rollout threads, train_interval 50, warmup 1e4, MSE loss, no value norm.
    ("hasac", "mpe/*", dict(checkpoint_every=4)),
    ("hasac", "mpe/*_discrete", dict(feature_norm=True)),
    # simple_spread (continuous): not the reference's settings, which end at -43.9 at 1M steps
    # (3 seeds, README) against the -25 a tuned learner should reach. Measured at 1M, 3 seeds
    # each: the affine map onto Box(0, 1) -40.6, plus n_step 5 -28.9, plus critic LayerNorm
    # -27.0, plus gamma 0.95 (25-step episodes that end in a bootstrapped truncation) -22.3.
    # mpe_action_map=reference n_step=20 critic_layer_norm=false gamma=0.99 gives the reference.
    ("hasac", "mpe/simple_spread", _SPREAD),
    # One-state games: HASPI alternates exact policy evaluation and improvement (Theorem 2);
    # a critic 30x faster than the actors approximates that, and the exact expectation over
    # an agent's own choices avoids the straight-through estimator's bias (algorithms/hasac.py).
    ("hasac", "matrix/*", dict(_MATRIX, alpha=10.0, actor_lr=1e-4, critic_lr=3e-3, discrete_actor_gradient="exact")),
    # HASAC paper Figure 1b / Table 3: the biased initial policy (0.6, 0.2, 0.2).
    ("hasac", "matrix/hasac_3x3", dict(init_policy=(0.6, 0.2, 0.2))),
    ("hasac", "matrix/differentiable", dict(alpha=0.05)),
    # HARL tuned_configs/mamujoco/*/hasac (the HASAC paper's runs): polyak 0.005, batch 1000,
    # warmup 1e4, train_interval 50. Observations as the reference's env computes them: every
    # agent sees the whole robot (its files say agent_obsk 0, which its get_obs never reads;
    # mamujoco_obs=local with that obsk 0 is the partially observable setting). The 10
    # rollout envs (the reference files say 20). Evaluation: 10 episodes every 25k steps (the
    # reference evaluates 40 every 10k, 4x the training env steps; too costly on a CPU).
    ("hasac", "mamujoco/*", dict(n_envs=10, mamujoco_obs="reference", mamujoco_obsk=0, eval_interval=25_000, eval_episodes=10,
                                 checkpoint_every=4, auto_alpha=True, n_step=10, actor_lr=1e-3, critic_lr=1e-3)),
    # HalfCheetah, HumanoidStandup, ManySegmentSwimmer: the block above. Hopper and Humanoid have no
    # tuned HASAC file; they use it too.
    ("hasac", "mamujoco/Ant-*", dict(auto_alpha=False, alpha=0.2, n_step=5, critic_lr=3e-4)),
    ("hasac", "mamujoco/Ant-2x4", dict(batch_size=2200)),
    ("hasac", "mamujoco/Ant-8x1", dict(batch_size=2200)),
    ("hasac", "mamujoco/Walker2d-*", dict(auto_alpha=False, alpha=0.2, n_step=20, actor_lr=5e-4)),
    # HARL tuned_configs/smac/*/hasac: auto temperature from 0.001, Huber loss, value
    # normalisation, n_step 20, lr 3e-4 / critic 5e-4, feature normalisation, 20 rollout envs;
    # for SMAX (our SMAC) and the real SMAC alike. Not the reference's target entropy 0 (its
    # shape bug, see hasac.py), with which alpha only decays and the policy is deterministic
    # from ~30k steps: on SMAX 3m (3 seeds, 1M steps) it won 51% (mean of the evaluations
    # 500k-1M), the per-state target 0.3 log |A_i(s)| with a 10x faster temperature 64%
    # (README, Benchmarks). The reference's setting:
    # discrete_target_entropy_ratio=0 discrete_target_entropy_over=action_space alpha_lr=3e-4,
    # plus alpha=1 for the reference's actual start (its runner ignores the file's 0.001; on
    # 3m, seed 0, that start plateaus at the same ~60% win rate).
    # Also not the reference: LayerNorm in the critics. Without it the critic's loss turns
    # upward at ~700k steps on SMAX 2s3z and the run collapses to 0% wins (with n_step 20 or 5,
    # with or without value normalisation); with it the loss stays flat and the run ends at 72%
    # (docs/smax_2s3z.md); on 3m it lifts the late win rate from 64% to 72% (3 seeds, README).
    # critic_layer_norm=false gives the reference's critic.
    *[("hasac", f"{family}/*", dict(n_envs=20, alpha=0.001, auto_alpha=True, critic_loss="huber", value_norm=True,
                                    n_step=20, actor_lr=3e-4, critic_lr=5e-4, feature_norm=True, critic_layer_norm=True,
                                    discrete_target_entropy_ratio=0.3, discrete_target_entropy_over="available",
                                    alpha_lr=3e-3, eval_interval=10_000, eval_episodes=32, checkpoint_every=10))
      for family in ("smax", "smac")],
    # ... and where a map has its own tuned file, what it changes (maps without one, 3m, 2s3z,
    # 3s5z, ..., keep the values above; 3s5z's file has exactly those)
    *[("hasac", f"sma[xc]/{m}", values) for m, values in {
        "5m_vs_6m": dict(gamma=0.95), "10m_vs_11m": dict(gamma=0.95), "MMM2": dict(gamma=0.95),
        "8m_vs_9m": dict(gamma=0.95, n_step=5, alpha=0.02), "6h_vs_8z": dict(n_step=5),
        "3s5z_vs_3s6z": dict(n_step=10), "corridor": dict(auto_alpha=False, alpha=0.002, n_step=5, actor_lr=5e-4),
    }.items()],
    # SMAX 3m (identical marines): one actor shared by the three and four updates of half the
    # batch per vector step (twice the reference's gradient compute). Measured at 1M, 3 seeds:
    # 85.0% over 500k-1M (87.5, 83.6, 83.8) against 72% for the values above, and 86.3% of
    # 1000 battles with the policies of 900k-1M (docs/benchmarks.md). Six more seeds on an
    # H200: 85.0% (actor_lr=6e-4 there: 83.1%, so the actor keeps 3e-4;
    # discrete_target_entropy_ratio_final=0.1: 84.7%; n_step=10: 84.8%, so those stay too).
    # gamma 0.95 (HARL's value for 5m_vs_6m and others; won 3m battles last ~15 steps): 87.5%
    # of 1000 battles over 9 seeds against 85.4% with 0.99, ahead on each of the 9 seeds
    # (88.5% over the three CPU seeds). gamma 0.9 (since 2026-12-05, by a rule set before two
    # of its seeds ran): 91.0% over the three CPU seeds (91.4, 91.8, 89.7) against 88.5% with
    # 0.95, the 90% within 1M steps, with a 95% interval of +-2.7 (docs/benchmarks.md).
    # share_param=false update_per_train=1 batch_size=1000 gamma=0.99 gives the values above.
    ("hasac", "smax/3m", dict(share_param=True, update_per_train=4, batch_size=500, gamma=0.9)),
    # Football: no tuned HASAC file exists; the defaults with the reference's feature
    # normalisation for discrete actors.
    ("hasac", "football/*", dict(feature_norm=True, eval_episodes=20)),
    # PettingZoo's MPE: the same tuned values as the JAX MPE (first two entries).
    ("hasac", "pz_mpe/*", dict(checkpoint_every=4)),
    ("hasac", "pz_mpe/*_discrete", dict(feature_norm=True)),
    ("hasac", "pz_mpe/simple_spread", _SPREAD),
]


def env_options(cfg: Config) -> dict:
    """The options of ``envs.make`` that come from the config."""
    family = cfg.env.split("/", 1)[0]
    if family in ("mpe", "pz_mpe") and not cfg.env.endswith("_discrete"):
        return {"action_map": cfg.mpe_action_map}
    if family == "mamujoco":
        return {"obsk": cfg.mamujoco_obsk, "obs": cfg.mamujoco_obs}
    return {}


def preset(algo: str, env: str) -> dict:
    out: dict = {}
    for a, pattern, values in PRESETS:
        if a == algo and fnmatch.fnmatch(env, pattern):
            out.update(values)
    return out


def _unknown(kind: str, name: str, choices) -> ValueError:
    close = difflib.get_close_matches(name, list(choices), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ValueError(f"unknown {kind} {name!r}.{hint} Valid choices: {', '.join(sorted(choices))}")


def _coerce(name: str, value):
    """Parse a command-line string (or pass a Python value) into the field's type."""
    tp = FIELDS[name].type
    hints = typing.get_type_hints(Config)[name]
    optional = typing.get_origin(hints) is typing.Union and type(None) in typing.get_args(hints)
    if optional:
        hints = next(t for t in typing.get_args(hints) if t is not type(None))
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
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
        if hints is int and isinstance(value, str):
            return int(float(value)) if float(value) == int(float(value)) else int(value)
        return hints(value)
    except (TypeError, ValueError):
        raise ValueError(f"invalid value {value!r} for {name}: expected {tp}") from None


def validate(cfg: Config) -> Config:
    if cfg.algo not in ALGOS:
        raise _unknown("algorithm", cfg.algo, ALGOS)
    check_env_name(cfg.env)

    def choice(name, choices):
        if getattr(cfg, name) not in choices:
            raise ValueError(f"invalid {name} {getattr(cfg, name)!r}. Valid choices: {', '.join(choices)}")

    choice("critic_loss", CRITIC_LOSSES)
    choice("temperature", TEMPERATURES)
    choice("discrete_actor_gradient", DISCRETE_ACTOR_GRADIENTS)
    choice("discrete_target_entropy_over", DISCRETE_TARGET_ENTROPY_OVER)
    choice("mpe_action_map", ACTION_MAPS)
    choice("vector_env", VECTOR_ENVS)
    choice("mamujoco_obs", MAMUJOCO_OBSERVATIONS)
    if cfg.mamujoco_obsk < 0:
        raise ValueError(f"invalid mamujoco_obsk={cfg.mamujoco_obsk!r}: must be >= 0")
    positive = ["total_steps", "n_envs", "train_interval", "eval_interval", "eval_episodes", "checkpoint_every",
                "buffer_size", "batch_size", "n_step", "mini_epochs", "actor_lr", "critic_lr", "alpha_lr",
                "huber_delta"]
    for name in positive:
        if not getattr(cfg, name) > 0:
            raise ValueError(f"invalid {name}={getattr(cfg, name)!r}: must be > 0")
    for name in ("warmup_steps", "update_per_train", "alpha", "discrete_target_entropy_ratio",
                 "discrete_target_entropy_ratio_final"):  # the last may be None (unset)
        if getattr(cfg, name) is not None and getattr(cfg, name) < 0:
            raise ValueError(f"invalid {name}={getattr(cfg, name)!r}: must be >= 0")
    if cfg.alpha == 0 and cfg.auto_alpha:
        raise ValueError("invalid alpha=0 with auto_alpha=true: the log-temperature starts at log(alpha)")
    if not 0 <= cfg.gamma <= 1:
        raise ValueError(f"invalid gamma={cfg.gamma!r}: must be in [0, 1]")
    if not 0 < cfg.polyak <= 1:
        raise ValueError(f"invalid polyak={cfg.polyak!r}: must be in (0, 1]")
    if cfg.actor_polyak is not None and not 0 < cfg.actor_polyak <= 1:
        raise ValueError(f"invalid actor_polyak={cfg.actor_polyak!r}: must be in (0, 1], or none for no averaged actor")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise ValueError(f"invalid seeds={cfg.seeds!r}: give distinct integers, e.g. seeds=0,1,2")
    if cfg.buffer_size // cfg.n_envs < cfg.n_step + 1:
        raise ValueError(f"invalid buffer_size={cfg.buffer_size}: it must hold n_step+1 steps of each of the {cfg.n_envs} envs")
    if cfg.init_policy is not None:
        if any(p <= 0 for p in cfg.init_policy) or abs(sum(cfg.init_policy) - 1) > 1e-6:
            raise ValueError(f"invalid init_policy={cfg.init_policy!r}: positive probabilities summing to 1")
    return cfg


def resolve(overrides: dict | None = None) -> Config:
    """Defaults <- preset(algo, env) <- overrides, validated. Raises ValueError naming the
    bad key or value and the valid choices."""
    overrides = dict(overrides or {})
    for key in overrides:
        if key not in FIELDS:
            raise _unknown("config key", key, FIELDS)
    algo = overrides.get("algo", Config.algo)
    env = overrides.get("env", Config.env)
    if algo not in ALGOS:
        raise _unknown("algorithm", algo, ALGOS)
    check_env_name(env)
    values = {**preset(algo, env), **overrides}
    cfg = Config(**{k: _coerce(k, v) for k, v in values.items()})
    return validate(cfg)


def parse_overrides(args: list[str]) -> dict:
    out = {}
    for a in args:
        if "=" not in a:
            raise ValueError(f"invalid argument {a!r}: expected key=value (keys: {', '.join(FIELDS)})")
        k, v = a.split("=", 1)
        out[k.strip().replace("-", "_")] = v
    return out


def from_dict(d: dict) -> Config:
    """Rebuild a saved config (config.yaml) exactly, without re-applying presets."""
    for key in d:
        if key not in FIELDS:
            raise _unknown("config key", key, FIELDS)
    return validate(Config(**{k: _coerce(k, v) for k, v in d.items()}))


__all__ = ["Config", "resolve", "parse_overrides", "from_dict", "preset", "ALGOS", "ENV_NAMES"]
