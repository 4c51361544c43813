"""Where a simple_spread policy loses return: control or assignment.

simple_spread's team reward at a step (JaxMARL's, local_ratio 0.5, 3 agents) is -1.5 * (sum
over landmarks of the distance to the nearest agent) - (agent pairs in contact). This plays
a trained run's deterministic policy (its last checkpoint) and the scripted landmark-assignment
controller (``meharl.scripted``, kp 4 kd 1, -18 per episode) on the same episodes and reports,
per policy:
  return                mean team return
  reward_by_step        mean team reward at each of the 25 steps (how fast, how close)
  coverage_final        sum over landmarks of the nearest agent's distance at the last step
  assigned_final        mean distance of an agent to its landmark under the least-total-distance
                        assignment at the last step (control precision)
  covered_final         fraction of landmarks with an agent within 0.1 at the last step
  one_to_one_final      fraction of episodes whose agents' nearest landmarks are all distinct
                        at the last step (a failed assignment: two agents on one landmark)
  speed_final           mean agent speed at the last step (still moving or braked)
  collisions            mean agent-agent collisions (pairs in contact) per episode

Usage:
  python bench/spread_diagnosis.py RUN_DIR [--step STEP] [--episodes 1000] [--seed-index 0] [--out diag.json]
"""
from __future__ import annotations

import jax
import numpy as np

import checkpoint_cli
from meharl import scripted
from meharl.runners.offpolicy import play_episodes


def positions(env_state, ts):
    """The record of every step: team reward, positions (agents, then landmarks), velocities."""
    s = env_state[0]  # JaxMARL's MPE state, batched over episodes
    return {"reward": ts.reward, "pos": s.p_pos, "vel": s.p_vel}


def summarize(ret, trace, n_agents: int, agent_size: float) -> dict:
    reward = np.asarray(trace["reward"])  # [steps, episodes]
    pos = np.asarray(trace["pos"])  # [steps, episodes, entities, 2]
    agents, landmarks = pos[:, :, :n_agents], pos[:, :, n_agents:]
    dist = np.linalg.norm(agents[:, :, :, None] - landmarks[:, :, None], axis=-1)  # [t, e, agent, landmark]
    last = dist[-1]
    best = np.asarray(jax.vmap(scripted.best_assignment)(last))  # [e, agent]: its landmark
    assigned = np.take_along_axis(last, best[..., None], -1).mean((1, 2))  # [e]
    nearest = last.argmin(-1)  # [e, agent]
    one_to_one = np.array([len(set(row)) == n_agents for row in nearest])
    gap = np.linalg.norm(agents[:, :, :, None] - agents[:, :, None], axis=-1)
    pairs = np.triu(np.ones((n_agents, n_agents), bool), 1)
    collisions = (gap[..., pairs] < 2 * agent_size).sum((0, 2))  # [e]
    return {
        "return": float(np.mean(ret)),
        "reward_by_step": [round(float(r), 3) for r in reward.mean(1)],
        "coverage_final": float(last.min(1).sum(-1).mean()),
        "assigned_final": float(assigned.mean()),
        "covered_final": float((last.min(1) < 0.1).mean()),
        "one_to_one_final": float(one_to_one.mean()),
        "speed_final": float(np.linalg.norm(np.asarray(trace["vel"])[-1, :, :n_agents], axis=-1).mean()),
        "collisions": float(collisions.mean()),
    }


def main():
    a, exp, algo_state, where = checkpoint_cli.load(__doc__, lambda cfg: (
        None if cfg.env == "mpe/simple_spread" and cfg.mpe_action_map == "box" else
        f"mpe_action_map={cfg.mpe_action_map}; this diagnosis needs env=mpe/simple_spread mpe_action_map=box "
        "(the controller's actions)"))
    runner, env = exp.runner, exp.runner.env
    n = env.spec.n_agents

    def hasac(k, env_state, ts):
        actions = runner.algo.act(algo_state, ts.obs, ts.action_mask, k, deterministic=True, averaged=True)
        return runner.algo.env_actions(actions)

    key = jax.random.PRNGKey(0)  # scripted.rollout's episodes: the same for both policies
    ret, _, trace = jax.jit(lambda k: play_episodes(env, hasac, k, a.episodes, positions))(key)
    steps = where["env_steps"]
    agent_size = float(env.env.rad[0])  # JaxMARL's simple_spread: agents 0.15, landmarks 0.05
    result = {"run_dir": a.run_dir, "env_steps": steps, "episodes": a.episodes,
              "hasac": summarize(ret, trace, n, agent_size)}
    ret, _, trace = scripted.rollout(env, scripted.spread_assignment(n, 4.0, 1.0), a.episodes, 0, positions)
    result["assignment kp=4 kd=1"] = summarize(ret, trace, n, agent_size)
    checkpoint_cli.emit(result, a.out)


if __name__ == "__main__":
    main()
