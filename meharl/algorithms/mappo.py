"""MAPPO (Yu et al. 2022): the simultaneous baseline. Every agent maximises the clipped
surrogate against the old policies of the others (M = 1). With ``share_param`` (the
default, as the reference) one actor is trained on all agents' samples pooled in each
minibatch; unshared, each agent's actor on its own samples."""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from meharl.algorithms.happo import HAPPO, HAPPOConfig
from meharl.algorithms.onpolicy import AgentData
from meharl.config import key


@dataclass(frozen=True)
class MAPPOConfig(HAPPOConfig):
    share_param: bool = key(True, "one actor shared by all agents (needs identical agents)")


class MAPPO(HAPPO):
    Config = MAPPOConfig
    simultaneous = True
    description = "Multi-Agent PPO (Yu et al. 2022): simultaneous, clipped, shared actor by default"

    def actor_steps_per_update(self):
        return self.actor_epochs() * self.cfg.actor_num_mini_batch  # every slot steps once per epoch and minibatch: pooled when shared, its agent's otherwise

    def improve_actors(self, ts, ro, adv, entropy_weight, key):
        if not self.cfg.share_param:
            return super().improve_actors(ts, ro, adv, entropy_weight, key)
        # pooled: one update of the shared actor on every agent's samples (identical agents, so
        # agent 0's masks are everyone's)
        n = self.n
        per = [self.agent_data(ro, i, adv, jnp.ones(adv.shape)) for i in range(n)]
        pooled = AgentData(*[None if xs[0] is None else jnp.concatenate(xs) for xs in zip(*per)])
        params, opt, s = self.gradient_epochs(self.slots.get(ts.actor_params, 0), self.slots.get(ts.actor_opt, 0), 0,
                                              pooled, key, entropy_weight, self.surrogate(), self.actor_epochs())
        new_logp = self.dist.log_prob(self.agent_outputs(params, 0, pooled), self.dim_mask[0], pooled.avail, pooled.action)
        kl = (pooled.old_logp - new_logp).reshape(n, -1)
        alive = pooled.alive.reshape(n, -1)
        stats = {"policy_loss": jnp.full(n, s["policy_loss"]), "entropy": jnp.full(n, s["entropy"]),
                 "kl": jnp.sum(kl * alive, 1) / jnp.maximum(alive.sum(1), 1.0)}
        put = lambda tree, v: jax.tree.map(lambda x, y: x.at[0].set(y), tree, v)  # noqa: E731
        return put(ts.actor_params, params), put(ts.actor_opt, opt), stats, {"perm": jnp.arange(n),
                                                                             "factors": jnp.ones((n, *adv.shape))}
