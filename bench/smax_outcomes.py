"""How a SMAX policy wins and loses: the battles' outcomes under the deterministic policy
(what evaluation measures) and under the stochastic one (what training plays and the critic
learns the value of). Plays a run's last checkpoint (or the policy kept at --step) on the
same episodes both ways and, for a run with an averaged actor (``actor_polyak``), the average
both ways too (``averaged_deterministic``, what its evaluation measures;
``averaged_stochastic``). Reports, per policy:
  won                   fraction of battles won (every enemy dead, an ally alive)
  wiped                 fraction ended with every ally dead (a mutual wipe counts here)
  timeout               fraction cut by SMAX's step limit
  steps_won             mean length of the won battles
  enemies_left_lost     histogram of enemies alive at the end of the lost battles
  allies_left_won       histogram of allies alive at the end of the won battles

Usage:
  python bench/smax_outcomes.py RUN_DIR [--step STEP] [--episodes 1000] [--seed-index 0] [--out outcomes.json]
"""
from __future__ import annotations

import jax
import numpy as np

import checkpoint_cli
from meharl.runners.offpolicy import play_episodes


def main():
    a, exp, algo_state, where = checkpoint_cli.load(
        __doc__, lambda cfg: None if cfg.env.startswith("smax/") else "this diagnosis needs a smax/<map> run")
    algo, env = exp.runner.algo, exp.runner.env
    n_allies, n_enemies = env.n_allies, env.env.num_enemies

    def units(env_state, ts):
        alive = env_state.state.unit_alive  # [episodes, allies + enemies]
        return {"done": ts.done, "truncated": ts.truncated,
                "allies": alive[:, :n_allies].sum(-1), "enemies": alive[:, n_allies:].sum(-1)}

    result = {"run_dir": a.run_dir, "env_steps": where["env_steps"], "episodes": a.episodes}
    policies = [("deterministic", True, False), ("stochastic", False, False)]
    if algo_state.avg_actor_params is not None:
        policies += [("averaged_deterministic", True, True), ("averaged_stochastic", False, True)]
    for name, deterministic, averaged in policies:
        def act(k, env_state, ts):
            return algo.env_actions(algo.act(algo_state, ts.obs, ts.action_mask, k, deterministic, averaged))

        _, won, trace = jax.jit(lambda k: play_episodes(env, act, k, a.episodes, units))(jax.random.PRNGKey(0))
        won, trace = np.asarray(won), jax.tree.map(np.asarray, trace)
        end = (trace["done"].argmax(0), np.arange(a.episodes))  # each episode's last step
        allies, enemies, timeout = trace["allies"][end], trace["enemies"][end], trace["truncated"][end]
        result[name] = {
            "won": float(won.mean()),
            "wiped": float(((allies == 0) & ~timeout).mean()),
            "timeout": float(timeout.mean()),
            "steps_won": float(end[0][won].mean() + 1) if won.any() else None,
            "enemies_left_lost": np.bincount(enemies[~won], minlength=n_enemies + 1).tolist(),
            "allies_left_won": np.bincount(allies[won], minlength=n_allies + 1).tolist(),
        }
    checkpoint_cli.emit(result, a.out)


if __name__ == "__main__":
    main()
