"""What the value-based methods share (QMIX, VDN, Soft-QMIX, FOP, ADER): recurrent agent
networks, a replay of sequences, TD(lambda) targets, target networks, epsilon-greedy acting.

Agent network (pymarl's RNNAgent, ``networks.RecurrentQ``): Dense + ReLU, a GRU cell, one
output per action; its input is the agent's observation, its previous action (one-hot, zero at
an episode's start; ``obs_last_action``) and its index (one-hot; ``obs_agent_id``), and its
parameters are shared by all agents unless ``share_param=false``.

Sequences (``runners/sequence.py``): every block resets the ``n_envs`` envs and runs
``sequence_length`` steps (the task's episode limit by default: pymarl's whole episodes), an
episode that ends inside a sequence restarting at once; each env's run is one stored
:class:`Sequence`. Training unrolls the GRU from the sequence's first step, which is an episode
start, with the hidden state zeroed wherever an episode starts: the hidden states of training
are those of acting (with the current parameters). The value after step t is one GRU step
from h_t on the observation that action led to (``next_obs``, before any reset), so a time
limit or the sequence's end bootstraps exactly and a new episode never leaks into the target.

Targets (pymarl2's ``build_td_lambda_targets``, written forward):

    G_t = r_t + gamma (1 - terminated_t) [(1 - lambda_t) Q'_{t+1} + lambda_t G_{t+1}]

with lambda_t = lambda inside an episode and 0 where it ends or the sequence does
(``td_lambda`` = 0: one-step targets). Q'_{t+1} is the target network's joint value at the
next step, at the online network's greedy actions with ``double_q`` (van Hasselt et al.).
Target networks: target <- tau online + (1 - tau) target every ``target_update_interval``
updates (tau = 1: pymarl's hard copy; interval 1 with tau < 1: Polyak averaging).
"""
from __future__ import annotations

import typing
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from meharl.algorithms.base import Algorithm
from meharl.algorithms.sequential import AgentSlots
from meharl.config import key
from meharl.networks import MASKED_LOGIT, RecurrentQ, recurrent_q_sequence, recurrent_q_step

OPTIMIZERS = ("rmsprop", "adam", "radam")


@dataclass(frozen=True)
class ValueConfig:
    """pymarl's defaults (default.yaml + qmix.yaml) unless a key says otherwise."""

    n_envs: int = key(8, "parallel envs, each storing one sequence per block", "positive")
    sequence_length: typing.Optional[int] = key(None, "steps of each stored sequence (the envs reset at its start); "
                                                "default: the task's episode limit (whole episodes)", "positive")
    hidden_dim: int = key(64, "width of the agent network's Dense layer and GRU (pymarl's rnn_hidden_dim)", "positive")
    obs_last_action: bool = key(True, "the agent's previous action is part of its network's input")
    obs_agent_id: bool = key(True, "the agent's one-hot index is part of its network's input")
    share_param: bool = key(True, "one agent network for all agents (false: one per agent)")
    lr: float = key(5e-4, "learning rate", "positive")
    optimizer: str = key("rmsprop", "optimiser (pymarl: RMSprop; pymarl2: Adam; JaxMARL: RAdam)", choices=OPTIMIZERS)
    optim_alpha: float = key(0.99, "RMSprop's decay of the squared-gradient average", "unit")
    optim_eps: float = key(1e-5, "the optimiser's epsilon", "positive")
    max_grad_norm: float = key(10.0, "gradient clipping by global norm", "positive")
    lr_decay: bool = key(False, "decay the learning rate linearly to 0 over the run")
    gamma: float = key(0.99, "discount factor", "prob")
    td_lambda: float = key(0.0, "lambda of the TD(lambda) targets (0: one-step, pymarl's QMIX; pymarl2: 0.6)", "prob")
    buffer_size: int = key(5000, "replay capacity in sequences", "positive")
    batch_size: int = key(32, "sequences per update", "positive")
    learning_starts: int = key(0, "env steps before the first update (it also waits for batch_size sequences)",
                               "nonneg")
    updates_per_block: int = key(1, "updates after each block of n_envs sequences (JaxMARL's NUM_EPOCHS)", "positive")
    target_update_interval: int = key(200, "updates between two target-network updates", "positive")
    tau: float = key(1.0, "target <- tau online + (1 - tau) target (1: hard copy)", "unit")
    epsilon_start: float = key(1.0, "the first epsilon: the probability of a uniformly random action", "prob")
    epsilon_finish: float = key(0.05, "the last epsilon", "prob")
    epsilon_anneal_steps: int = key(50_000, "env steps of the linear epsilon schedule", "positive")
    reward_scale: float = key(1.0, "rewards are multiplied by this in training (JaxMARL's REW_SCALE)", "positive")

    def validate(self):
        pass


class Sequence(typing.NamedTuple):
    """One env's ``sequence_length`` consecutive steps, [T, ...] (a batch of them: [B, T, ...])."""

    obs: jax.Array  # [T, n, O] what the agents acted on
    state: jax.Array  # [T, S]
    action: jax.Array  # [T, n] int32
    avail: jax.Array  # [T, n, A] available actions at obs
    alive: jax.Array  # [T, n]
    start: jax.Array  # [T] 1 where obs begins an episode
    reward: jax.Array  # [T]
    terminated: jax.Array  # [T] 1 where the step ended the episode for real (no bootstrap)
    done: jax.Array  # [T] 1 where the episode ended (terminated or truncated)
    next_obs: jax.Array  # [T, n, O] what the action led to (the final one where the episode ended)
    next_state: jax.Array  # [T, S]
    next_avail: jax.Array  # [T, n, A]


class ValueState(typing.NamedTuple):
    params: dict  # {"agent": one parameter set per slot (leading axis), "mixer": ...}
    opt: optax.OptState
    target: dict
    updates: jax.Array


def td_lambda_targets(reward, terminated, done, next_value, gamma: float, lam: float, bonus=None):
    """G_t of the module docstring over the last axis (time): [..., T] each. ``bonus``: a term
    added to G_{t+1} where the return goes on (the soft return's -alpha log pi of the next
    step's action, Soft-QMIX Appendix D)."""
    if lam == 0:  # one-step targets: no recursion
        return reward + gamma * (1.0 - terminated) * next_value
    lam_t = lam * (1.0 - done)
    lam_t = lam_t.at[..., -1].set(0.0)  # the sequence ends: bootstrap fully
    bonus = jnp.zeros_like(reward) if bonus is None else bonus

    def back(g_next, x):
        r, term, v, l, e = x
        g = r + gamma * (1.0 - term) * ((1.0 - l) * v + l * (g_next + e))
        return g, g

    xs = tuple(jnp.moveaxis(a, -1, 0) for a in (reward, terminated, next_value, lam_t, bonus))
    _, g = jax.lax.scan(back, jnp.zeros_like(reward[..., 0]), xs, reverse=True)
    return jnp.moveaxis(g, 0, -1)


def greedy(q, avail):
    """argmax over the available actions (available: > 0)."""
    return jnp.argmax(jnp.where(avail > 0, q, MASKED_LOGIT), -1)


class RecurrentAgents(Algorithm):
    """Recurrent agent networks, their optimiser and target copy, acting and the unroll over a
    batch of sequences. A subclass adds its mixer (``init_mixer``) and its loss (``loss``)."""

    Config = ValueConfig
    learner = "sequence"
    continuous = False

    def __init__(self, spec, cfg, total_updates: int = 1):
        super().__init__(spec, cfg, total_updates)
        self.n_actions = spec.max_action_dim
        self.agent = RecurrentQ(cfg.hidden_dim, self.n_actions)
        self.input_dim = spec.max_obs_dim + self.n_actions * cfg.obs_last_action + self.n * cfg.obs_agent_id
        self.n_slots = AgentSlots(self.n, cfg.share_param).n_slots
        lr = self.lr(cfg.lr, total_updates)
        opt = {"rmsprop": lambda: optax.rmsprop(lr, decay=cfg.optim_alpha, eps=cfg.optim_eps),
               "adam": lambda: optax.adam(lr, eps=cfg.optim_eps),
               "radam": lambda: optax.radam(lr, eps=cfg.optim_eps)}[cfg.optimizer]()
        self.tx = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), opt)

    # ------------------------------------------------------------------ parameters
    def init_mixer(self, key) -> dict:
        """The mixer's parameters (none: VDN)."""
        return {}

    def init(self, key) -> ValueState:
        k_agent, k_mixer = jax.random.split(key)
        x, h = jnp.zeros((self.input_dim,)), jnp.zeros((self.cfg.hidden_dim,))
        agent = jax.vmap(lambda k: self.agent.init(k, x, h, jnp.zeros(())))(jax.random.split(k_agent, self.n_slots))
        params = {"agent": agent, "mixer": self.init_mixer(k_mixer)}
        return ValueState(params, self.tx.init(params), params, jnp.zeros((), jnp.int32))

    # ------------------------------------------------------------------ the agent networks
    def inputs(self, obs, last_action):
        """Network inputs [..., n, D]: observation (padding zeroed), previous action, agent id."""
        parts = [obs * self.obs_mask]
        if self.cfg.obs_last_action:
            parts.append(last_action)
        if self.cfg.obs_agent_id:
            parts.append(jnp.broadcast_to(jnp.eye(self.n), obs.shape[:-1] + (self.n,)))
        return jnp.concatenate(parts, -1)

    def agents(self, agent_params):
        """One step of every agent as a function (x [..., n, D], h [..., n, H], start [...]) ->
        (Q [..., n, A], h'); the shared parameter set is sliced here, once, not in every step."""
        if self.n_slots == 1:
            shared = jax.tree.map(lambda p: p[0], agent_params)

            def step(x, h, start):
                return recurrent_q_step(self.agent, shared, x, h, start[..., None])
            return step

        def step(x, h, start):  # agent axis first, one parameter set each
            move = lambda a: jnp.moveaxis(a, -2, 0)  # noqa: E731
            start = jnp.broadcast_to(start[..., None], x.shape[:-1])
            q, h = jax.vmap(lambda p, x, h, s: recurrent_q_step(self.agent, p, x, h, s))(
                agent_params, move(x), move(h), jnp.moveaxis(start, -1, 0))
            return jnp.moveaxis(q, 0, -2), jnp.moveaxis(h, 0, -2)
        return step

    def carry(self, batch_shape) -> tuple:
        """Acting's recurrent state: (h [..., n, H], previous action [..., n, A]), zero."""
        return (jnp.zeros(batch_shape + (self.n, self.cfg.hidden_dim)),
                jnp.zeros(batch_shape + (self.n, self.n_actions)))

    def evaluation_carry(self, batch_shape) -> tuple:
        return self.carry(batch_shape)

    def step_q(self, params, obs, carry, start):
        """Every agent's Q on obs [..., n, O] after its history ``carry``; start [...] where an
        episode begins. Returns (Q [..., n, A], h')."""
        h, last = carry
        last = jnp.where(start[..., None, None] > 0, 0.0, last)
        return self.agents(params["agent"])(self.inputs(obs, last), h, start)

    def local_q(self, critic, critic_params, obs):
        """Per-agent critics Q_i(o_i, .) [K, ..., n, A] (FOP's and ADER's): the MLP ``critic`` on
        the observation and the agent's one-hot id, shared by the agents, one per parameter set
        of ``critic_params``' leading axis K."""
        x = jnp.concatenate([obs * self.obs_mask, jnp.broadcast_to(jnp.eye(self.n), obs.shape[:-1] + (self.n,))], -1)
        return jax.vmap(lambda p: critic.apply(p, x, jnp.ones_like(x)))(critic_params)

    def init_local_q(self, critic, key, k: int):
        """K parameter sets of ``critic`` for :meth:`local_q`."""
        x = jnp.zeros((self.spec.max_obs_dim + self.n,))
        return jax.vmap(lambda kk: critic.init(kk, x, jnp.ones_like(x)))(jax.random.split(key, k))

    def epsilon(self, env_steps):
        cfg = self.cfg
        frac = jnp.minimum(env_steps / cfg.epsilon_anneal_steps, 1.0)
        return cfg.epsilon_start + frac * (cfg.epsilon_finish - cfg.epsilon_start)

    def policy(self, params, q, avail, global_state, key):
        """Training's actions [..., n] before epsilon: the greedy ones (a subclass samples)."""
        return greedy(q, avail)

    def explore(self, params, q, avail, global_state, key, env_steps):
        """Training's actions [..., n]: with probability epsilon (per agent and env) a uniformly
        random available action, else ``policy``'s."""
        k_coin, k_random, k_policy = jax.random.split(key, 3)
        random = jnp.argmax(self.random_actions(avail, k_random), -1)
        coin = jax.random.uniform(k_coin, q.shape[:-1]) < self.epsilon(env_steps)
        return jnp.where(coin, random, self.policy(params, q, avail, global_state, k_policy))

    def act_step(self, state, ts, key, carry, start, env_steps):
        """Training's one-hot actions [..., n, A] on the time steps ``ts`` and the new carry."""
        q, h = self.step_q(state.params, ts.obs, carry, start)
        a = jax.nn.one_hot(self.explore(state.params, q, ts.action_mask * self.dim_mask, ts.state, key, env_steps),
                           self.n_actions)
        return a, (h, a)

    def evaluation_act(self, state, obs, action_mask, key, carry=()):
        """Greedy actions of the agent networks (the episodes start at the first call)."""
        q, h = self.step_q(state.params, obs, carry, jnp.zeros(obs.shape[:-2]))
        a = jax.nn.one_hot(greedy(q, action_mask * self.dim_mask), self.n_actions)
        return a, (h, a)

    def unroll(self, agent_params, seq: Sequence):
        """Q of every step and of every step's successor, [B, T, n, A] each, and the hidden
        states after every step [B, T, n, H]: the GRU from the sequences' first step, zeroed
        where an episode starts. The successor's Q is the next step's inside an episode, else
        one step from h_t on next_obs; that is computed only where it is needed, at a time limit
        or the sequence's last step (after a termination it is not used): an episode runs at most
        ``max_steps`` steps (EnvSpec), so a sequence of T steps that starts an episode holds at
        most T // max_steps time limits, and the last step makes one more."""
        onehot = jax.nn.one_hot(seq.action, self.n_actions)
        last = jnp.concatenate([jnp.zeros_like(onehot[:, :1]), onehot[:, :-1]], 1)
        last = jnp.where(seq.start[..., None, None] > 0, 0.0, last)
        x = jnp.moveaxis(self.inputs(seq.obs, last), 1, 0)  # time first for the scan
        start = jnp.broadcast_to(jnp.moveaxis(seq.start, 1, 0)[..., None], x.shape[:-1])
        if self.n_slots == 1:
            q, hs = recurrent_q_sequence(self.agent, jax.tree.map(lambda p: p[0], agent_params), x, start)
        else:  # agent axis first, one parameter set each
            q, hs = jax.vmap(lambda p, x, s: recurrent_q_sequence(self.agent, p, x, s), (0, -2, -1), -2)(
                agent_params, x, start)
        q, hs = jnp.moveaxis(q, 0, 1), jnp.moveaxis(hs, 0, 1)
        agents = self.agents(agent_params)
        T = seq.start.shape[1]
        bootstrap = (seq.done * (1.0 - seq.terminated)).at[:, -1].set(1.0)
        k = jax.vmap(lambda m: jnp.nonzero(m > 0, size=T // self.spec.max_steps + 1, fill_value=T - 1)[0])(bootstrap)
        take = lambda a: jnp.take_along_axis(a, k.reshape(k.shape + (1,) * (a.ndim - 2)), 1)  # noqa: E731
        q_end, _ = agents(self.inputs(take(seq.next_obs), take(onehot)), take(hs), jnp.zeros(k.shape))
        q_next = jnp.concatenate([q[:, 1:], q[:, -1:]], 1)
        q_next = q_next.at[jnp.arange(k.shape[0])[:, None], k].set(q_end)
        return q, q_next, hs

    # ------------------------------------------------------------------ the update
    def loss(self, params, target, seq: Sequence, key, env_steps):
        """(loss, metrics) of one batch of sequences, ``env_steps`` into the run (schedules)."""
        raise NotImplementedError

    def update(self, state: ValueState, seq: Sequence, key, env_steps):
        cfg = self.cfg
        seq = seq._replace(reward=seq.reward * cfg.reward_scale)
        (_, metrics), g = jax.value_and_grad(self.loss, has_aux=True)(state.params, state.target, seq, key, env_steps)
        upd, opt = self.tx.update(g, state.opt, state.params)
        params = optax.apply_updates(state.params, upd)
        updates = state.updates + 1
        due = updates % cfg.target_update_interval == 0
        target = jax.tree.map(lambda p, t: jnp.where(due, cfg.tau * p + (1 - cfg.tau) * t, t), params, state.target)
        return ValueState(params, opt, target, updates), metrics
