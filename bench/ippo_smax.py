"""Calibration baseline for SMAX win rates: IPPO with a GRU actor-critic, with the settings of
JaxMARL's own SMAX baseline (``baselines/IPPO/config/ippo_rnn_smax.yaml``: 128 envs x 128
steps, lr 4e-3 annealed, 4 epochs x 4 minibatches, clip 0.05, entropy 0.01, GAE 0.95, shared
parameters, no agent id). It is not part of meharl; it answers "what does a standard method
reach on the same environment and budget", which SMAC numbers cannot (SMAX is not SMAC).

The win rate is that of the training episodes (stochastic policy) that ended in each
rollout, as JaxMARL's ``SMAXLogWrapper`` counts it (an episode whose last reward includes the
win bonus). The environment is meharl's ``smax/<map>`` one (``meharl.envs.smax.SMAX``).

    pip install -e ".[bench]"   # six, which JaxMARL's wrappers need through gymnax
    python bench/ippo_smax.py --map 3m --steps 1000000 --seeds 0,1,2 --out bench/out/ippo_3m.json
"""
from __future__ import annotations

import argparse
import json
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.linen.initializers import constant, orthogonal
from flax.training.train_state import TrainState

from meharl.envs.smax import SMAX  # first: it imports JaxMARL with its import message on stderr
from jaxmarl.wrappers.baselines import SMAXLogWrapper  # after meharl's quiet import (above)
from meharl.networks import categorical_entropy, masked_log_softmax

CFG = dict(lr=4e-3, num_envs=128, num_steps=128, hidden=128, epochs=4, minibatches=4, gamma=0.99,
           gae_lambda=0.95, clip=0.05, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.25)


class GRUStep(nn.Module):
    @nn.compact
    def __call__(self, h, x):
        e, reset = x
        h = jnp.where(reset[:, None], jnp.zeros_like(h), h)  # a new episode starts from zeros
        return nn.GRUCell(features=CFG["hidden"])(h, e)


class ActorCriticRNN(nn.Module):
    n_actions: int

    @nn.compact
    def __call__(self, h, obs, resets, avail):
        """Inputs are [time, batch, ...]; returns the final hidden state, log-probabilities
        over the available actions and values."""
        dense = lambda n, s: nn.Dense(n, kernel_init=orthogonal(s), bias_init=constant(0.0))
        e = nn.relu(dense(CFG["hidden"], np.sqrt(2))(obs))
        h, e = nn.scan(GRUStep, variable_broadcast="params", split_rngs={"params": False})()(h, (e, resets))
        logp = masked_log_softmax(dense(self.n_actions, 0.01)(nn.relu(dense(CFG["hidden"], 2)(e))), avail)
        value = dense(1, 1.0)(nn.relu(dense(CFG["hidden"], 2)(e)))[..., 0]
        return h, logp, value


def make_train(map_name: str, total_steps: int):
    env = SMAXLogWrapper(SMAX(map_name).env)
    agents, E, T, H = env.agents, CFG["num_envs"], CFG["num_steps"], CFG["hidden"]
    n_actors = len(agents) * E
    n_updates = total_steps // (T * E)
    n_actions = env.action_space(agents[0]).n
    net = ActorCriticRNN(n_actions)

    def stack(x):  # {agent: [E, ...]} -> [agents * E, ...]
        return jnp.stack([x[a] for a in agents]).reshape((n_actors, -1))

    def log_prob(logp, a):
        return jnp.take_along_axis(logp, a[..., None], -1)[..., 0]

    def loss_fn(params, h0, batch, adv, target):
        _, logp, v = net.apply(params, h0, batch["obs"], batch["reset"], batch["avail"])
        ratio = jnp.exp(log_prob(logp, batch["action"]) - batch["log_prob"])
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        actor = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - CFG["clip"], 1 + CFG["clip"]) * adv).mean()
        v_clipped = batch["value"] + jnp.clip(v - batch["value"], -CFG["clip"], CFG["clip"])
        critic = 0.5 * jnp.maximum((v - target) ** 2, (v_clipped - target) ** 2).mean()
        entropy = categorical_entropy(logp, batch["avail"]).mean()
        return actor + CFG["vf_coef"] * critic - CFG["ent_coef"] * entropy

    def train(key):
        key, k_init, k_reset = jax.random.split(key, 3)
        obs_dim = env.observation_space(agents[0]).shape[0]
        params = net.init(k_init, jnp.zeros((E, H)), jnp.zeros((1, E, obs_dim)), jnp.zeros((1, E), bool),
                          jnp.ones((1, E, n_actions), bool))
        lr = lambda count: CFG["lr"] * (1.0 - (count // (CFG["minibatches"] * CFG["epochs"])) / n_updates)
        ts = TrainState.create(apply_fn=net.apply, params=params, tx=optax.chain(
            optax.clip_by_global_norm(CFG["max_grad_norm"]), optax.adam(lr, eps=1e-5)))
        obs, env_state = jax.vmap(env.reset)(jax.random.split(k_reset, E))

        def env_step(carry, _):
            ts, env_state, obs, reset, h, key = carry
            key, k_act, k_env = jax.random.split(key, 3)
            avail = stack(jax.vmap(env.get_avail_actions)(env_state.env_state)).astype(bool)
            o = stack(obs)
            h, logp, v = net.apply(ts.params, h, o[None], reset[None], avail[None])
            a = jax.random.categorical(k_act, logp[0])
            acts = dict(zip(agents, a.reshape(len(agents), E)))
            obs, env_state, r, done, info = jax.vmap(env.step)(jax.random.split(k_env, E), env_state, acts)
            step = dict(obs=o, reset=reset, avail=avail, action=a, log_prob=log_prob(logp[0], a), value=v[0],
                        reward=stack(r)[:, 0], done=jnp.tile(done["__all__"], len(agents)),
                        ended=info["returned_episode"].reshape(-1), won=info["returned_won_episode"].reshape(-1))
            return (ts, env_state, obs, stack(done)[:, 0], h, key), step

        def update(carry, _):
            h0 = carry[4]
            (ts, env_state, obs, reset, h, key), traj = jax.lax.scan(env_step, carry, None, T)
            _, _, last_v = net.apply(ts.params, h, stack(obs)[None], reset[None], jnp.ones((1, n_actors, n_actions), bool))

            def gae(c, s):  # generalised advantage estimation, backwards in time
                g, next_v = c
                delta = s["reward"] + CFG["gamma"] * next_v * (1 - s["done"]) - s["value"]
                g = delta + CFG["gamma"] * CFG["gae_lambda"] * (1 - s["done"]) * g
                return (g, s["value"]), g
            _, adv = jax.lax.scan(gae, (jnp.zeros(n_actors), last_v[0]), traj, reverse=True)
            target = adv + traj["value"]

            def epoch(c, _):
                ts, key = c
                key, k = jax.random.split(key)
                perm = jax.random.permutation(k, n_actors)  # minibatches of whole actor sequences
                split = lambda x, ax: jnp.moveaxis(jnp.take(x, perm, ax).reshape(
                    x.shape[:ax] + (CFG["minibatches"], -1) + x.shape[ax + 1:]), ax, 0)
                mbs = (split(h0, 0), jax.tree.map(lambda x: split(x, 1), (traj, adv, target)))

                def minibatch(ts, mb):
                    h_mb, (b, a_mb, t_mb) = mb
                    return ts.apply_gradients(grads=jax.grad(loss_fn)(ts.params, h_mb, b, a_mb, t_mb)), None
                ts, _ = jax.lax.scan(minibatch, ts, mbs)
                return (ts, key), None
            (ts, key), _ = jax.lax.scan(epoch, (ts, key), None, CFG["epochs"])
            n_ended = traj["ended"].sum()
            win_rate = jnp.where(n_ended > 0, (traj["won"] * traj["ended"]).sum() / jnp.maximum(n_ended, 1), jnp.nan)
            return (ts, env_state, obs, reset, h, key), win_rate

        carry = (ts, env_state, obs, jnp.zeros(n_actors, bool), jnp.zeros((n_actors, H)), key)
        return jax.lax.scan(update, carry, None, n_updates)[1]

    return jax.jit(train), n_updates * T * E


def main():
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--map", default="3m")
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--seeds", default="0")
    p.add_argument("--out", default="bench/out/ippo_smax.json")
    args = p.parse_args()
    train, steps = make_train(args.map, args.steps)
    per_rollout = CFG["num_envs"] * CFG["num_steps"]
    result = {"map": args.map, "env_steps": steps, "config": CFG, "seeds": {}}
    for seed in (int(s) for s in args.seeds.split(",")):
        t0 = time.time()
        curve = np.asarray(train(jax.random.PRNGKey(seed)))
        wall = time.time() - t0
        late = float(np.nanmean(curve[len(curve) // 2:]))
        result["seeds"][seed] = {"wall_s": wall, "env_steps_per_s": steps / wall,
                                 "final_win_rate": float(curve[-1]), "late_win_rate": late,
                                 "curve": [[(i + 1) * per_rollout, float(w)] for i, w in enumerate(curve)]}
        print(f"seed {seed}: final win rate {curve[-1]:.3f}, mean over the second half {late:.3f}, "
              f"{wall:.0f} s", flush=True)
    finals = [s["final_win_rate"] for s in result["seeds"].values()]
    result["final_win_rate_mean"] = float(np.mean(finals))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"mean final win rate {np.mean(finals):.3f}; JSON: {args.out}")


if __name__ == "__main__":
    main()
