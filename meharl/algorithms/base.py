"""What every algorithm declares, and the config keys the actor-critic algorithms share.

An algorithm is a class with

    Config        its typed config dataclass (keys, defaults, one-line help, checks)
    learner       "off_policy" (replay, runners/offpolicy.py), "on_policy" (rollouts, runners/onpolicy.py)
                  or "sequence" (a replay of recurrent sequences, runners/sequence.py)
    continuous, discrete, masked   the action spaces it handles (masked: per-state available actions)
    metrics       the names of the metrics its ``update`` returns (the columns of metrics.csv)
    per_agent_metrics  those of them that are one value per agent ([n]): metrics.csv has their
                  mean over the agents and one column per agent, ``name_i``
    spans_run     the keys whose schedules span total_steps (a finished run with one of them
                  set cannot be extended)

and the pure functions ``init(key) -> state``, ``act(state, obs, action_mask, key,
deterministic) -> actions``, ``evaluation_act(state, obs, action_mask, key, carry) ->
(actions, carry)`` from ``evaluation_carry(batch_shape)`` (the policy evaluation plays) and
``update(state, batch, key) -> (state, metrics)``. The
registry (``algorithms/__init__.py``) maps names to classes; nothing outside an algorithm's
module names its keys.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from meharl.config import key
from meharl.envs.core import EnvSpec

CRITIC_LOSSES = ("mse", "huber")


@dataclass(frozen=True)
class ActorCriticConfig:
    """Keys of every actor-critic algorithm of the (ME)HAML template."""

    n_envs: int = key(20, "parallel rollout envs (HARL's n_rollout_threads)", "positive")
    hidden_sizes: tuple[int, ...] = key((128, 128), "hidden layer widths of actors and critics", "positive")
    actor_lr: float = key(5e-4, "actor learning rate (Adam)", "positive")
    critic_lr: float = key(5e-4, "critic learning rate (Adam)", "positive")
    lr_decay: bool = key(False, "decay both learning rates linearly to 0 over the run")
    gamma: float = key(0.99, "discount factor", "prob")
    share_param: bool = key(False, "one actor shared by all agents (needs identical agents)")
    fixed_order: bool = key(False, "update the agents in index order instead of a fresh random order (ablation)")
    feature_norm: bool = key(False, "LayerNorm on the actors' inputs")
    value_norm: bool = key(False, "normalise the critic's targets by their running mean and std")
    critic_loss: str = key("mse", "critic regression loss", choices=CRITIC_LOSSES)
    huber_delta: float = key(10.0, "Huber loss threshold", "positive")

    def validate(self):
        if not self.hidden_sizes:
            raise ValueError("invalid hidden_sizes=(): give at least one layer width, e.g. hidden_sizes=128,128")


@dataclass(frozen=True)
class StochasticPolicyConfig(ActorCriticConfig):
    """Keys of the algorithms with stochastic policies (HASAC, HAPPO, HATRPO, HAA2C, MAPPO)."""

    alpha: float = key(0.0, "temperature of the MaxEnt objective (0: HAML, > 0: MEHAML)", "nonneg")
    init_policy: typing.Optional[tuple[float, ...]] = key(None, "discrete: initial policy of every agent, e.g. 0.6,0.2,0.2")

    def validate(self):
        super().validate()
        if self.init_policy is not None:
            if any(p <= 0 for p in self.init_policy) or abs(sum(self.init_policy) - 1) > 1e-6:
                raise ValueError(f"invalid init_policy={self.init_policy!r}: positive probabilities summing to 1")


@dataclass(frozen=True)
class OffPolicyConfig(ActorCriticConfig):
    """The off-policy runner's schedule (HARL's off-policy runner) and replay."""

    warmup_steps: int = key(10_000, "env steps of uniformly random actions before learning", "nonneg")
    train_interval: int = key(50, "vector steps between two blocks of updates", "positive")
    update_per_train: float = key(1.0, "a block is update_per_train * train_interval updates", "nonneg")
    buffer_size: int = key(1_000_000, "replay capacity in transitions", "positive")
    batch_size: int = key(1000, "transitions per update", "positive")
    n_step: int = key(1, "n of the n-step TD target", "positive")
    polyak: float = key(0.005, "Polyak rate of the target networks", "unit")
    critic_layer_norm: bool = key(False, "LayerNorm in the critics' hidden layers (not in the reference)")

    def validate(self):
        super().validate()
        if self.buffer_size // self.n_envs < self.n_step + 1:
            raise ValueError(f"invalid buffer_size={self.buffer_size}: it must hold n_step+1 steps of each of the "
                             f"{self.n_envs} envs")


class Algorithm:
    """Base of the registered algorithms: the declarations above and what they share."""

    Config: typing.ClassVar[type] = ActorCriticConfig
    learner: typing.ClassVar[str] = "off_policy"
    continuous: typing.ClassVar[bool] = True
    discrete: typing.ClassVar[bool] = True
    masked: typing.ClassVar[bool] = True
    metrics: typing.ClassVar[tuple[str, ...]] = ()
    per_agent_metrics: typing.ClassVar[tuple[str, ...]] = ()
    spans_run: typing.ClassVar[tuple[str, ...]] = ("lr_decay",)
    description: typing.ClassVar[str] = ""

    def __init__(self, spec: EnvSpec, cfg, total_updates: int = 1):
        kind = "discrete" if spec.discrete else "continuous"
        if not getattr(self, kind):
            from meharl.algorithms import ALGORITHMS

            fit = sorted(n for n, a in ALGORITHMS.items() if getattr(a, kind))
            raise ValueError(f"algo={cfg.algo} does not handle {kind} actions ({spec.name}); "
                             f"algorithms for {kind} actions: {', '.join(fit)}")
        if cfg.share_param and not spec.homogeneous:
            raise ValueError(
                f"share_param=true needs agents with identical spaces; {spec.name} has {sorted(set(spec.agents), key=str)}")
        init_policy = getattr(cfg.algorithm, "init_policy", None)
        if init_policy is not None and not (spec.discrete and all(a.action_dim == len(init_policy) for a in spec.agents)):
            raise ValueError(f"init_policy={init_policy} needs discrete agents with {len(init_policy)} actions each")
        self.spec, self.cfg = spec, cfg
        self.n = spec.n_agents
        self.obs_mask = jnp.asarray(spec.obs_mask)
        self.dim_mask = jnp.asarray(spec.action_dim_mask)

    def lr(self, base: float, steps: int):
        """The learning rate, decayed linearly to 0 over ``steps`` optimiser steps with lr_decay."""
        return optax.linear_schedule(base, 0.0, max(steps, 1)) if self.cfg.lr_decay else base

    def random_actions(self, action_mask, key):
        """Warmup: uniform over [-1, 1]^d (continuous) or over the available choices."""
        if self.spec.discrete:
            logits = jnp.zeros(action_mask.shape)
            return jax.nn.one_hot(jax.random.categorical(key, jnp.where(action_mask * self.dim_mask > 0, logits, -1e9)),
                                  action_mask.shape[-1])
        return jax.random.uniform(key, action_mask.shape, minval=-1.0, maxval=1.0) * self.dim_mask

    def evaluation_act(self, state, obs, action_mask, key, carry=()):
        """The policy evaluation plays: the deterministic one."""
        return self.act(state, obs, action_mask, key, deterministic=True), carry

    def evaluation_carry(self, batch_shape) -> tuple:
        """What ``evaluation_act`` carries from step to step (recurrent states); none here."""
        return ()

    def env_actions(self, actions):
        """Padded policy actions -> what the env's ``step`` takes (indices for discrete)."""
        return jnp.argmax(actions, -1) if self.spec.discrete else actions


def set_initial_policy(actor_params, init_policy):
    """Start every discrete agent at ``init_policy``: the output layer's weights zero and its
    bias log p. The output layer is the actor's own Dense (recurrent actors), else the Dense
    of the highest index in its MLP."""
    head = jnp.log(jnp.asarray(init_policy, jnp.float32))
    layers = actor_params["params"]
    if "Dense_0" not in layers:
        layers = layers["MLP_0"]
    last = max((k for k in layers if k.startswith("Dense_")), key=lambda k: int(k.split("_")[1]))
    layers[last]["kernel"] = jnp.zeros_like(layers[last]["kernel"])
    layers[last]["bias"] = jnp.broadcast_to(head, layers[last]["bias"].shape)
    return actor_params


class ValueNorm(typing.NamedTuple):
    """Running mean/variance of critic targets with debiasing (the reference's ValueNorm,
    beta 0.99999)."""

    mean: jax.Array
    mean_sq: jax.Array
    debias: jax.Array

    @staticmethod
    def create():
        return ValueNorm(jnp.zeros(()), jnp.zeros(()), jnp.zeros(()))

    def stats(self):
        d = jnp.maximum(self.debias, 1e-5)
        mean, mean_sq = self.mean / d, self.mean_sq / d
        return mean, jnp.sqrt(jnp.maximum(mean_sq - mean**2, 1e-2))

    def update(self, x, beta=0.99999):
        return ValueNorm(
            self.mean * beta + x.mean() * (1 - beta),
            self.mean_sq * beta + jnp.square(x).mean() * (1 - beta),
            self.debias * beta + (1 - beta),
        )

    def normalize(self, x):
        mean, std = self.stats()
        return (x - mean) / std

    def denormalize(self, x):
        mean, std = self.stats()
        return x * std + mean

    def targets(self, y, on: bool):
        """A critic's regression targets y: with value normalisation on, the statistics updated
        with y and y normalised by them; off, both unchanged. Returns (statistics, targets)."""
        if not on:
            return self, y
        value_norm = self.update(y)
        return value_norm, value_norm.normalize(y)

    def values(self, q, on: bool):
        """A critic's outputs in the return's scale: de-normalised when value normalisation is on."""
        return self.denormalize(q) if on else q


def regression_loss(err, cfg):
    """The critic's per-sample loss of an error: 0.5 err^2 or Huber(delta)."""
    if cfg.critic_loss == "huber":
        return optax.huber_loss(err, delta=cfg.huber_delta)
    return 0.5 * jnp.square(err)


def describe(cls) -> list[tuple[str, str, str]]:
    """(key, default, help) of a config class, for ``meharl list``."""
    import dataclasses

    return [(f.name, repr(f.default if f.default is not dataclasses.MISSING else f.default_factory()),
             f.metadata.get("help", "")) for f in dataclasses.fields(cls)]


__all__ = ["Algorithm", "ActorCriticConfig", "StochasticPolicyConfig", "OffPolicyConfig", "ValueNorm", "set_initial_policy", "regression_loss"]
