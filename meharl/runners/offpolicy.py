"""The off-policy training loop over JAX environments, compiled end to end.

Schedule (the reference HARL off-policy runner): ``warmup_steps`` env steps of uniformly
random actions fill the buffer; then each *block* is ``train_interval`` vector steps of all
``n_envs`` envs with the stochastic policy, followed by ``update_per_train * train_interval``
gradient updates. A *chunk* is a loop over blocks; the experiment runs chunks
between evaluations. Everything here is for one seed; :meth:`OffPolicyRunner.compile`
``vmap``s it over seeds and jits it (``runners/host.py`` is the same loop with the envs
stepped on the host).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from meharl.buffer import NStepReplay, Transition
from meharl.envs.core import TimeStep, step_autoreset


class RunnerState(NamedTuple):
    algo: NamedTuple
    buffer: NamedTuple
    env_state: NamedTuple
    timestep: TimeStep
    key: jax.Array
    carry: tuple = ()  # a recurrent policy's acting state (runners/onpolicy.py)


class SeedLoop(NamedTuple):
    """The training loop over all seeds at once, as the experiment drives it: every function
    takes and returns values with a leading seed axis."""

    init: Callable  # keys -> RunnerState
    warmup: Callable  # RunnerState -> RunnerState (random actions)
    chunk: Callable  # (RunnerState, n_blocks) -> (RunnerState, metrics averaged over the chunk)
    evaluate: Callable  # (algo states, keys) -> (per-episode returns, won)
    template: Callable  # keys -> the RunnerState's shapes and dtypes (to load a checkpoint)
    resumed: Callable  # (RunnerState loaded from a checkpoint, blocks done) -> RunnerState to continue from


def over_seeds(f, n_seeds: int, in_axes=0):
    """vmap ``f`` over a leading seed axis. With one seed, the plain program on the squeezed
    axis: on CPU, batched matmuls over a size-1 axis cost ~15% of the update rate."""
    if n_seeds > 1:
        return jax.vmap(f, in_axes=in_axes)

    def one_seed(*args):
        axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
        args = [a if ax is None else jax.tree.map(lambda x: x[0], a) for a, ax in zip(args, axes)]
        return jax.tree.map(lambda x: x[None], f(*args))

    return one_seed


def jit_once(f, **kwargs):
    """``jax.jit`` for a program run once per run (init, warmup): on CPU compiled at XLA's
    optimisation level 0, which halves its compile time (3-5 s per run) for a slower single call
    (0-1.6 s). Its results may differ from the default level's in the last float32 bits.
    docs/architecture.md, Runners."""
    options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
    return jax.jit(f, compiler_options=options, **kwargs)


def transition(ts: TimeStep, actions, final: TimeStep) -> Transition:
    """What the replay stores of one step: acting on ``ts`` led to ``final``."""
    return Transition(
        obs=ts.obs, state=ts.state, action=actions, action_mask=ts.action_mask, alive=ts.alive,
        reward=final.reward, terminated=final.terminated.astype(jnp.float32), done=final.done,
        next_obs=final.obs, next_state=final.state, next_action_mask=final.action_mask, next_alive=final.alive,
    )


class Schedule(NamedTuple):
    """Counts derived from the config (all static)."""

    warmup_vector_steps: int
    block_env_steps: int
    updates_per_block: int
    blocks: int
    blocks_per_eval: int

    @staticmethod
    def of(cfg) -> "Schedule":
        warm = math.ceil(cfg.warmup_steps / cfg.n_envs)
        block_env_steps = cfg.n_envs * cfg.train_interval
        remaining = max(cfg.total_steps - warm * cfg.n_envs, 0)
        return Schedule(
            warmup_vector_steps=warm,
            block_env_steps=block_env_steps,
            updates_per_block=int(cfg.update_per_train * cfg.train_interval),
            blocks=math.ceil(remaining / block_env_steps),
            blocks_per_eval=max(1, round(cfg.eval_interval / block_env_steps)),
        )

    def env_steps(self, blocks_done: int, n_envs: int) -> int:
        return self.warmup_vector_steps * n_envs + blocks_done * self.block_env_steps


def seed_sharding(n_seeds: int):
    """The seed axis split over the machine's accelerators (``jax.sharding``): over as many
    devices as divide ``n_seeds`` evenly; None (one device) where that is one. The seeds are
    independent programs, so XLA runs each device's seeds there with no communication."""
    devices = jax.devices()
    d = max(k for k in range(1, len(devices) + 1) if n_seeds % k == 0)
    if d < 2:
        return None
    mesh = jax.sharding.Mesh(np.array(devices[:d]), ("seed",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seed"))


class CompiledLoop:
    """What the three compiled loops (off-policy, on-policy, value-based) share: compiling
    over seeds, the chunk of blocks, the block's updates and the evaluation. A loop defines
    ``init``, ``warmup``, ``block`` and, for ``updates``, ``_update``."""

    def compile(self, n_seeds: int) -> SeedLoop:
        """jit the loop over ``n_seeds`` seeds; the runner state is donated so the replay
        buffers are updated in place. On several accelerators the state's seed axis is sharded
        over them (:func:`seed_sharding`); the later functions keep their inputs' sharding."""
        sharding = seed_sharding(n_seeds)

        def strong_init(keys):
            # no weakly typed leaf (SMAX's reset keeps a Python int in its enemy policy's state): the
            # chunk's output is strongly typed, and a weak leaf in its first input compiles it twice
            return jax.tree.map(lambda x: x.astype(x.dtype), self.init(keys))

        init = jit_once(over_seeds(strong_init, n_seeds), out_shardings=sharding)
        return SeedLoop(
            init=init,
            warmup=jit_once(over_seeds(self.warmup, n_seeds), donate_argnums=0),
            chunk=jax.jit(over_seeds(self.chunk, n_seeds, (0, None)), donate_argnums=0),
            evaluate=jax.jit(over_seeds(self.evaluate, n_seeds)),
            template=lambda keys: jax.eval_shape(init, keys),
            resumed=lambda rs, blocks_done: rs if sharding is None else jax.device_put(rs, sharding),
        )

    def close(self):
        """Nothing to release: the environments live inside the compiled program."""

    def updates(self, rs: RunnerState):
        """The block's ``updates_per_block`` updates (``_update`` each); metrics averaged."""
        rs, metrics = jax.lax.scan(self._update, rs, None, self.schedule.updates_per_block)
        return rs, jax.tree.map(lambda m: m.mean(0), metrics)

    def chunk(self, rs: RunnerState, n_blocks):
        """n_blocks blocks; returns the metrics averaged over the chunk's blocks. n_blocks is a
        traced argument, so one compiled program serves every chunk length (the last chunk of
        a run, a resumed or extended run's)."""
        one_block = jax.jit(self.block)  # traced once: the loop body reuses eval_shape's trace

        def block(_, carry):
            rs, total = carry
            rs, metrics = one_block(rs, None)
            return rs, jax.tree.map(jnp.add, total, metrics)

        zeros = jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), jax.eval_shape(one_block, rs, None)[1])
        rs, total = jax.lax.fori_loop(0, n_blocks, block, (rs, zeros))
        return rs, jax.tree.map(lambda t: t / n_blocks, total)

    def evaluate(self, algo_state, key):
        """The algorithm's evaluation policy (``evaluation_act``), ``eval_episodes`` fresh
        episodes in parallel. Returns per-episode (team return, won)."""
        return evaluate_policy(self.env, self.algo, algo_state, key, self.cfg.eval_episodes)


class OffPolicyRunner(CompiledLoop):
    def __init__(self, env, algo, cfg, spec=None):
        self.env, self.algo, self.cfg = env, algo, cfg
        self.spec = env.spec if spec is None else spec
        self.schedule = Schedule.of(cfg)
        if self.schedule.warmup_vector_steps < cfg.n_step:
            raise ValueError(
                f"invalid warmup_steps={cfg.warmup_steps}: the first update needs n_step={cfg.n_step} steps of each of "
                f"the {cfg.n_envs} envs, i.e. warmup_steps >= {cfg.n_step * cfg.n_envs}"
            )
        # the replay holds no more than the run can fill (a short run does not allocate and
        # checkpoint a 1M-transition buffer); an extended run's checkpoint is padded to the new size
        run_vector_steps = self.schedule.warmup_vector_steps + self.schedule.blocks * cfg.train_interval
        capacity = min(cfg.buffer_size, (run_vector_steps + 1) * cfg.n_envs)
        self.replay = NStepReplay(cfg.n_envs, capacity, cfg.n_step, cfg.batch_size, cfg.gamma)

    @property
    def total_updates(self) -> int:
        return self.schedule.blocks * self.schedule.updates_per_block

    # ------------------------------------------------------------------ pieces
    def init_learner(self, key, ts: TimeStep):
        """Algorithm state and an empty replay shaped after the time steps ``ts`` [n_envs, ...]."""
        one = jax.tree.map(lambda x: x[0], ts)
        example = transition(one, jnp.zeros(one.action_mask.shape), one)
        return self.algo.init(key), self.replay.init(example)

    def init(self, key) -> RunnerState:
        k_algo, k_env, k_run = jax.random.split(key, 3)
        env_state, ts = jax.vmap(self.env.reset)(jax.random.split(k_env, self.cfg.n_envs))
        algo_state, buffer = self.init_learner(k_algo, ts)
        return RunnerState(algo_state, buffer, env_state, ts, k_run)

    def act(self, algo_state, ts: TimeStep, key, random: bool):
        """Actions of all envs: uniformly random (warmup) or sampled from the policy."""
        if random:
            return jax.vmap(self.algo.random_actions)(ts.action_mask, jax.random.split(key, self.cfg.n_envs))
        return self.algo.act(algo_state, ts.obs, ts.action_mask, key)

    def _env_step(self, rs: RunnerState, random: bool) -> RunnerState:
        key, k_act, k_env = jax.random.split(rs.key, 3)
        actions = self.act(rs.algo, rs.timestep, k_act, random)
        env_state, final, next_ts = jax.vmap(step_autoreset, in_axes=(None, 0, 0, 0))(
            self.env, jax.random.split(k_env, self.cfg.n_envs), rs.env_state, self.algo.env_actions(actions)
        )
        buffer = self.replay.add(rs.buffer, transition(rs.timestep, actions, final))
        return rs._replace(buffer=buffer, env_state=env_state, timestep=next_ts, key=key)

    def warmup(self, rs: RunnerState) -> RunnerState:
        return jax.lax.scan(lambda r, _: (self._env_step(r, True), None), rs, None, self.schedule.warmup_vector_steps)[0]

    def _update(self, rs: RunnerState, _):
        key, k_sample, k_update = jax.random.split(rs.key, 3)
        batch = self.replay.sample(rs.buffer, k_sample)
        algo_state, metrics = self.algo.update(rs.algo, batch, k_update)
        return rs._replace(algo=algo_state, key=key), metrics

    def block(self, rs: RunnerState, _):
        rs = jax.lax.scan(lambda r, _: (self._env_step(r, False), None), rs, None, self.cfg.train_interval)[0]
        return self.updates(rs)


def evaluate_policy(env, algo, algo_state, key, n_episodes: int):
    """Per-episode (team return, won) of the algorithm's evaluation policy (``evaluation_act``)."""
    def act(k, env_state, ts, carry):
        actions, carry = algo.evaluation_act(algo_state, ts.obs, ts.action_mask, k, carry)
        return algo.env_actions(actions), carry

    return play_episodes(env, act, key, n_episodes, carry=algo.evaluation_carry((n_episodes,)))


def play_episodes(env, act, key, n_episodes: int, record=None, carry=None):
    """Per-episode (team return, won) of ``n_episodes`` fresh episodes played in parallel by
    ``act(key, env_states, timesteps) -> actions`` (batched over the episodes); what comes
    after an episode's end is not counted. With ``carry`` (a recurrent policy's state),
    ``act(key, env_states, timesteps, carry) -> (actions, carry)``. With
    ``record(env_states, timesteps) -> pytree``, also the pytree after every step, stacked
    [max_steps, ...] (diagnostics of the behaviour)."""
    k_reset, k_run = jax.random.split(key)
    env_state, ts = jax.vmap(env.reset)(jax.random.split(k_reset, n_episodes))
    stateful = carry is not None

    def step(c, k):
        env_state, ts, ret, won, running, policy_carry = c
        k_act, k_env = jax.random.split(k)
        if stateful:
            actions, policy_carry = act(k_act, env_state, ts, policy_carry)
        else:
            actions = act(k_act, env_state, ts)
        env_state, nts = jax.vmap(env.step)(jax.random.split(k_env, n_episodes), env_state, actions)
        ret = ret + jnp.where(running, nts.reward, 0.0)  # an ended episode's env may step to anything
        won = jnp.where(running & nts.done, nts.won, won)
        return ((env_state, nts, ret, won, running & ~nts.done, policy_carry),
                None if record is None else record(env_state, nts))

    init = (env_state, ts, jnp.zeros(n_episodes), jnp.zeros(n_episodes, bool), jnp.ones(n_episodes, bool),
            carry if stateful else ())
    (_, _, ret, won, _, _), trace = jax.lax.scan(step, init, jax.random.split(k_run, env.spec.max_steps))
    return (ret, won) if record is None else (ret, won, trace)
