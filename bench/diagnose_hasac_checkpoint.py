"""Diagnose a HASAC checkpoint of a discrete-action run (SMAX): temperatures, value-norm
statistics, the critic's targets and twin gap on replay batches, per-agent entropies against
their per-state targets, and (unless --no-adam) whether each actor's entropy answers the
temperature: 150 Adam steps against the checkpoint's critic at 1x, 100x and 1e4x alpha.

    python bench/diagnose_hasac_checkpoint.py RUN_DIR [CHECKPOINT_DIR] [--no-adam]

CHECKPOINT_DIR (default RUN_DIR) holds checkpoint.npz/.json and the run's config.yaml."""
import sys
from pathlib import Path
import jax, jax.numpy as jnp, numpy as np, optax
from meharl.experiment import Experiment, load_run
from meharl.algorithms.hasac import _index
from meharl.networks import MASKED_LOGIT, categorical_entropy, masked_log_softmax

args = [a for a in sys.argv[1:] if not a.startswith("--")]
run_dir = Path(args[0])
ckpt_dir = Path(args[1]) if len(args) > 1 else run_dir
cfg = load_run(run_dir)
exp = Experiment(cfg, ckpt_dir, quiet=True)
rs, prog = exp.load_checkpoint()
rs = jax.tree.map(lambda x: x[0], rs)
algo, runner = exp.runner.algo, exp.runner
ts = rs.algo
print("blocks_done", prog["blocks_done"], "updates", int(ts.updates))
print("alpha", np.asarray(jnp.exp(ts.log_alpha)))
if cfg.value_norm:
    mean, std = ts.value_norm.stats(); print("value_norm mean/std", float(mean), float(std))

def batches(n, seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), n)
    return [runner.replay.sample(rs.buffer, k) for k in keys]

# uniform over the replay (the whole history up to buffer_size), as the training updates sample
B = batches(4)
def stats(params_all, batch):
    out = {}
    for i in range(algo.n):
        p = _index(params_all, int(algo.param_index[i]))
        logits = algo._agent_out(p, i, batch.obs[:, i])
        mask = algo.dim_mask[i] * batch.action_mask[:, i]
        H = jax.vmap(categorical_entropy)(logits, mask)
        alive = batch.alive[:, i] > 0
        n_av = mask.sum(-1)
        tgt = algo.target_entropies(batch.action_mask)[:, i]
        lp = masked_log_softmax(logits, mask)
        top = jnp.sort(jnp.where(mask > 0, lp, MASKED_LOGIT), -1)
        gap = top[:, -1] - top[:, -2]
        out[i] = dict(H=float(H[alive].mean()), tgt=float(tgt[alive].mean()), alive=float(alive.mean()),
                      navail=float(n_av[alive].mean()), frac_det=float((H[alive] < 0.05).mean()),
                      gap_med=float(jnp.median(jnp.where(n_av > 1, gap, 0.0)[alive])),
                      logit_absmax=float(jnp.abs(jnp.where(mask > 0, logits, 0.0)).max()))
    return out

b0 = B[0]
for i, s in stats(ts.actor_params, b0).items():
    print("agent", i, {k: round(v, 3) for k, v in s.items()})

q = algo._q(ts.critic_params, b0.state, b0.action, ts.value_norm)
print("Q mean/std", float(q.mean()), float(q.std()), "reward mean", float(b0.reward.mean()))
y, nq2, ent = algo.soft_q_target(ts, b0, jax.random.PRNGKey(5))
print("next_q twins mean", np.asarray(nq2.mean(1)), "min mean", float(nq2.min(0).mean()), "twin gap mean", float(jnp.abs(nq2[0]-nq2[1]).mean()))
print("entropy_term mean", float(ent.mean()), "y mean/std", float(y.mean()), float(y.std()), "discount mean", float(b0.discount.mean()))
if cfg.value_norm:
    qn = algo.critic(ts.critic_params, b0.state, b0.action)
    print("normalized Q mean", float(qn.mean()), "normalized y mean", float(ts.value_norm.normalize(y).mean()))
if "--no-adam" in sys.argv:
    sys.exit()

def respond(i, alpha_scale, steps=150, lr=cfg.actor_lr):
    """Adam steps on agent i alone (Eq. 10's objective, the others playing their replay actions)
    against the checkpoint's critic at alpha_scale x its temperature; returns the mean exact
    entropy over alive states and the median gradient norm."""
    p = _index(ts.actor_params, int(algo.param_index[i]))
    tx = optax.adam(lr); opt = tx.init(p)
    log_alpha = jnp.log(algo._alpha(ts.log_alpha)[i] * alpha_scale)
    def loss(p, batch, key):
        return algo.actor_loss(p, i, ts.critic_params, ts.value_norm, batch, batch.action, key, log_alpha)[0]
    @jax.jit
    def step(p, opt, batch, key):
        g = jax.grad(loss)(p, batch, key)
        u, opt = tx.update(g, opt, p)
        return optax.apply_updates(p, u), opt, optax.global_norm(g)
    key = jax.random.PRNGKey(1)
    gn = []
    for t in range(steps):
        key, k = jax.random.split(key)
        p, opt, g = step(p, opt, B[t % 3], k); gn.append(float(g))
    logits = algo._agent_out(p, i, B[3].obs[:, i])
    mask = algo.dim_mask[i] * B[3].action_mask[:, i]
    H = jax.vmap(categorical_entropy)(logits, mask)
    alive = B[3].alive[:, i] > 0
    return float(H[alive].mean()), float(np.median(gn))

for i in range(algo.n):
    base = stats(ts.actor_params, B[3])[i]["H"]
    r = {"before": round(base, 3)}
    for scale in (1.0, 100.0, 1e4):
        H, g = respond(i, scale); r[f"alpha_x{scale:g}"] = (round(H, 3), f"{g:.2e}")
    print("agent", i, "entropy after 150 Adam steps:", r, flush=True)
