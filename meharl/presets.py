"""Presets as data: one table per algorithm, task pattern -> values.

Values come from the reference's tuned files (HARL ``tuned_configs``) unless a row's note
says why not; the evidence for every such difference is in the algorithm's page under
``docs/algorithms/``. Rows apply in order to every task their pattern matches
(``fnmatch``), later rows overriding earlier ones; the user's ``key=value`` overrides come
last. Keys may be of any section (run, environment, algorithm).
"""
from __future__ import annotations

from typing import NamedTuple


class Preset(NamedTuple):
    pattern: str
    values: dict
    note: str = ""  # why a value differs from the reference's tuned file, if one does


_MATRIX = dict(
    total_steps=6_000, n_envs=10, warmup_steps=500, train_interval=10, update_per_train=1.0,
    eval_interval=1_000, eval_episodes=10, hidden_sizes=(64, 64),
    buffer_size=10_000, batch_size=256, n_step=1, auto_alpha=False,
)
_SPREAD = dict(mpe_action_map="box", n_step=5, critic_layer_norm=True, gamma=0.95)
_SPREAD_NOTE = ("not the reference's settings: box action map, n_step 5, critic LayerNorm and gamma 0.95 learn "
                "better at 1M steps (evidence: docs/algorithms/hasac.md)")
_SMAX = dict(n_envs=20, alpha=0.001, auto_alpha=True, critic_loss="huber", value_norm=True, n_step=20, actor_lr=3e-4,
             critic_lr=5e-4, feature_norm=True, critic_layer_norm=True, discrete_target_entropy_ratio=0.3,
             discrete_target_entropy_over="available", alpha_lr=3e-3, eval_interval=10_000, eval_episodes=32,
             checkpoint_every=10)
_SMAX_NOTE = ("HARL smac/*/hasac, except the per-state target entropy 0.3 log|A_i(s)| with a 10x faster temperature "
              "(the reference's target is 0, a shape bug) and critic LayerNorm (2s3z collapses without it)")

HASAC = [
    # HARL tuned_configs/pettingzoo_mpe/*/hasac: [256, 256], lr 5e-4, auto alpha, n_step 20,
    # batch 1000, 20 rollout threads, train_interval 50, warmup 1e4, MSE loss, no value norm.
    Preset("mpe/*", dict(checkpoint_every=4)),
    Preset("mpe/*_discrete", dict(feature_norm=True)),
    Preset("mpe/simple_spread", _SPREAD, _SPREAD_NOTE),
    Preset("matrix/*", dict(_MATRIX, alpha=10.0, actor_lr=1e-4, critic_lr=3e-3, discrete_actor_gradient="exact"),
           "no tuned file: a critic 30x faster than the actors approximates HASPI's exact evaluation (Theorem 2)"),
    Preset("matrix/hasac_3x3", dict(init_policy=(0.6, 0.2, 0.2)), "HASAC paper Figure 1b's biased initial policy"),
    Preset("matrix/differentiable", dict(alpha=0.05)),
    Preset("matrix/ader_path", dict(auto_alpha=True, alpha=0.1353, alpha_lr=0.01, total_steps=20_000),
           "ADER Appendix C's alpha_init e^-2 with fitted temperatures (H_0 = 2 x (-1)); alpha_lr 0.01 so that "
           "the temperatures follow the targets within the run (docs/algorithms/ader.md)"),
    # HARL tuned_configs/mamujoco/*/hasac: polyak 0.005, batch 1000, warmup 1e4, train_interval 50.
    Preset("mamujoco/*", dict(n_envs=10, mamujoco_obs="reference", mamujoco_obsk=0, eval_interval=25_000,
                              eval_episodes=10, checkpoint_every=4, auto_alpha=True, n_step=10, actor_lr=1e-3,
                              critic_lr=1e-3),
           "10 rollout envs (the files: 20); 10 evaluation episodes every 25k steps (the files: 40 every 10k)"),
    Preset("mamujoco/Ant-*", dict(auto_alpha=False, alpha=0.2, n_step=5, critic_lr=3e-4)),
    Preset("mamujoco/Ant-2x4", dict(batch_size=2200)),
    Preset("mamujoco/Ant-8x1", dict(batch_size=2200)),
    Preset("mamujoco/Walker2d-*", dict(auto_alpha=False, alpha=0.2, n_step=20, actor_lr=5e-4)),
    Preset("smax/*", _SMAX, _SMAX_NOTE),
    Preset("smac/*", _SMAX, _SMAX_NOTE),
    *[Preset(f"sma[xc]/{m}", values) for m, values in {
        "5m_vs_6m": dict(gamma=0.95), "10m_vs_11m": dict(gamma=0.95), "MMM2": dict(gamma=0.95),
        "8m_vs_9m": dict(gamma=0.95, n_step=5, alpha=0.02), "6h_vs_8z": dict(n_step=5),
        "3s5z_vs_3s6z": dict(n_step=10), "corridor": dict(auto_alpha=False, alpha=0.002, n_step=5, actor_lr=5e-4),
    }.items()],
    Preset("smax/3m", dict(share_param=True, update_per_train=4, batch_size=500, gamma=0.9),
           "one shared actor, four half-batch updates per vector step, gamma 0.9: more battles won at 1M steps "
           "than with the shared SMAX values (evidence: docs/benchmarks.md)"),
    Preset("football/*", dict(feature_norm=True, eval_episodes=20), "no tuned HASAC file exists"),
    Preset("pz_mpe/*", dict(checkpoint_every=4)),
    Preset("pz_mpe/*_discrete", dict(feature_norm=True)),
    Preset("pz_mpe/simple_spread", _SPREAD, _SPREAD_NOTE),
]

PRESETS: dict[str, list[Preset]] = {"hasac": HASAC}  # the on-policy tables are added below


# ---------------------------------------------------------------------------------------
# The on-policy family: HARL tuned_configs/{pettingzoo_mpe,mamujoco,smac}/*/{happo,hatrpo,haa2c,mappo}
# (only what differs from the algos_cfgs defaults, which are the config classes' defaults).

_ON_MATRIX = [
    Preset("matrix/*", dict(total_steps=40_000, n_envs=10, episode_length=20, hidden_sizes=(64, 64), actor_lr=5e-3,
                            critic_lr=5e-3, eval_interval=4_000, eval_episodes=10),
           "no tuned file: one-step games, 200 samples an iteration and a 10x faster actor than the MPE default"),
    Preset("matrix/hasac_3x3", dict(init_policy=(0.6, 0.2, 0.2)), "HASAC paper Figure 1b's biased initial policy"),
]
# eval_interval: the tuned files' 25 iterations of 20 envs x 200 steps.
_MAMUJOCO = dict(hidden_sizes=(128, 128, 128), mamujoco_obs="reference", mamujoco_obsk=0, eval_interval=100_000,
                 eval_episodes=40)
_SMAC = dict(episode_length=160, hidden_sizes=(64, 64, 64), eval_interval=10_000, eval_episodes=32)
_NO_RNN = "the tuned file's recurrent policy is not built yet: an MLP"


def _smac(per_map: dict) -> list[Preset]:
    return [Preset(f"{family}/*", _SMAC) for family in ("smax", "smac")] + [
        Preset(f"sma[xc]/{m}", values, _NO_RNN if rnn else "") for m, (values, rnn) in per_map.items()]


HAPPO = [
    *_ON_MATRIX,
    Preset("mamujoco/*", _MAMUJOCO),
    Preset("mamujoco/Ant-4x2", dict(clip_param=0.1, entropy_coef=0.0)),
    Preset("mamujoco/HalfCheetah-2x3", dict(clip_param=0.05, ppo_epoch=15, critic_epoch=15)),
    Preset("mamujoco/Hopper-3x1", dict(lr_decay=True, clip_param=0.05, ppo_epoch=10, critic_epoch=10, entropy_coef=0.0)),
    Preset("mamujoco/Humanoid-17x1", dict(lr_decay=True, clip_param=0.1, entropy_coef=0.0)),
    Preset("mamujoco/Walker2d-2x3", dict(lr_decay=True, actor_lr=1e-3, critic_lr=1e-3, actor_num_mini_batch=2,
                                         critic_num_mini_batch=2, clip_param=0.05, entropy_coef=0.0)),
    Preset("mamujoco/Walker2d-6x1", dict(clip_param=0.1)),
    *_smac({
        "10m_vs_11m": (dict(clip_param=0.05, gamma=0.95), True), "25m": ({}, True),
        "27m_vs_30m": (dict(clip_param=0.05, gamma=0.95), True), "3s5z": ({}, True),
        "3s5z_vs_3s6z": (dict(actor_num_mini_batch=2, critic_num_mini_batch=2, clip_param=0.1, gamma=0.95), True),
        "5m_vs_6m": (dict(clip_param=0.05, gamma=0.95), True),
        "6h_vs_8z": (dict(actor_num_mini_batch=2, critic_num_mini_batch=2, clip_param=0.05, ppo_epoch=10,
                          critic_epoch=10, gamma=0.95), False),
        "8m_vs_9m": (dict(clip_param=0.05, gamma=0.95), True), "MMM2": (dict(gamma=0.95), False),
    }),
]
HATRPO = [
    *_ON_MATRIX,
    Preset("mpe/*", dict(kl_threshold=0.005)),
    Preset("pz_mpe/*", dict(kl_threshold=0.005)),
    Preset("mamujoco/*", _MAMUJOCO),
    Preset("mamujoco/Ant-4x2", dict(kl_threshold=0.005)),
    Preset("mamujoco/Hopper-3x1", dict(kl_threshold=0.001)),
    Preset("mamujoco/Walker2d-6x1", dict(kl_threshold=0.005)),
    *_smac({
        "10m_vs_11m": (dict(backtrack_coeff=0.5, gamma=0.95, kl_threshold=0.005), False),
        "25m": (dict(backtrack_coeff=0.5), True), "27m_vs_30m": (dict(kl_threshold=0.001), True),
        "3s5z": (dict(backtrack_coeff=0.5, gamma=0.95), False),
        "3s5z_vs_3s6z": (dict(backtrack_coeff=0.5, kl_threshold=0.005), False),
        "5m_vs_6m": (dict(backtrack_coeff=0.5), True), "6h_vs_8z": (dict(critic_lr=1e-3, kl_threshold=0.001), False),
        "8m_vs_9m": (dict(backtrack_coeff=0.5, kl_threshold=0.005), False),
        "MMM2": (dict(backtrack_coeff=0.5, gamma=0.95, kl_threshold=0.06), False),
        "corridor": (dict(backtrack_coeff=0.5, kl_threshold=0.06), True),
    }),
]
HAA2C = [
    *_ON_MATRIX,
    Preset("mamujoco/*", _MAMUJOCO),
    Preset("mamujoco/Ant-4x2", dict(lr_decay=True, entropy_coef=0.0)),
    Preset("mamujoco/HalfCheetah-2x3", dict(lr_decay=True, entropy_coef=0.0)),
    Preset("mamujoco/Hopper-3x1", dict(lr_decay=True, actor_lr=1e-4, critic_lr=1e-4, a2c_epoch=3, critic_epoch=3,
                                       entropy_coef=0.0)),
    Preset("mamujoco/Walker2d-*", dict(lr_decay=True, actor_lr=1e-4, critic_lr=1e-4, entropy_coef=0.0)),
    *[Preset(f"{family}/*", _SMAC, "no tuned SMAC file: HAPPO's shared SMAC values") for family in ("smax", "smac")],
]
MAPPO = [
    *_ON_MATRIX,
    Preset("mpe/simple_speaker_listener*", dict(share_param=False)),
    Preset("pz_mpe/simple_speaker_listener*", dict(share_param=False)),
    Preset("mamujoco/*", _MAMUJOCO),
    Preset("mamujoco/Ant-4x2", dict(clip_param=0.1, entropy_coef=0.0)),
    Preset("mamujoco/HalfCheetah-2x3", dict(clip_param=0.05, ppo_epoch=15, critic_epoch=15)),
    Preset("mamujoco/Hopper-3x1", dict(lr_decay=True, clip_param=0.05, ppo_epoch=10, critic_epoch=10, entropy_coef=0.0)),
    Preset("mamujoco/Humanoid-17x1", dict(episode_length=100, lr_decay=True, clip_param=0.1, entropy_coef=0.0)),
    Preset("mamujoco/Walker2d-2x3", dict(lr_decay=True, actor_lr=1e-3, critic_lr=1e-3, actor_num_mini_batch=2,
                                         critic_num_mini_batch=2, clip_param=0.05, entropy_coef=0.0)),
    Preset("mamujoco/Walker2d-6x1", dict(clip_param=0.1)),
    *[Preset(f"{family}/*", _SMAC, "no tuned SMAC file: HAPPO's shared SMAC values") for family in ("smax", "smac")],
]

PRESETS.update(happo=HAPPO, hatrpo=HATRPO, haa2c=HAA2C, mappo=MAPPO)


# ---------------------------------------------------------------------------------------
# The deterministic off-policy family: HARL tuned_configs/{pettingzoo_mpe,mamujoco}/*/{haddpg,hatd3,maddpg,matd3}
# (HARL paper Tables 7, 13-16; only what differs from the config classes' defaults).

_DET_MATRIX = Preset("matrix/*", {k: v for k, v in _MATRIX.items() if k != "auto_alpha"},
                     "no tuned file: HASAC's matrix-game schedule (a one-step game needs no 1M replay)")
_DET_MPE = [Preset(f"{family}/*", dict(n_envs=20, eval_episodes=20, checkpoint_every=4)) for family in ("mpe", "pz_mpe")]
_DET_MAMUJOCO = dict(n_envs=10, hidden_sizes=(256, 256), mamujoco_obs="reference", mamujoco_obsk=0,
                     eval_interval=25_000, eval_episodes=10, checkpoint_every=4)
_DET_MAMUJOCO_NOTE = "10 evaluation episodes every 25k steps (the files: 40 every 10k), as HASAC's preset"


def _per_task(values: dict) -> list[Preset]:
    return [Preset(f"mamujoco/{task}", v) for task, v in values.items()]


HADDPG = [
    _DET_MATRIX, *_DET_MPE, Preset("mamujoco/*", dict(_DET_MAMUJOCO, n_step=20), _DET_MAMUJOCO_NOTE),
    *_per_task({"Ant-4x2": dict(update_per_train=0.5, expl_noise=0.05), "Walker2d-2x3": dict(n_step=10)}),
]
HATD3 = [
    _DET_MATRIX, *_DET_MPE, Preset("mamujoco/*", _DET_MAMUJOCO, _DET_MAMUJOCO_NOTE),
    *_per_task({"Ant-4x2": dict(n_step=5), "HalfCheetah-2x3": dict(n_step=10), "Hopper-3x1": dict(n_step=5),
                "Walker2d-2x3": dict(n_step=20, policy_freq=8), "Walker2d-6x1": dict(n_step=25),
                "Humanoid-17x1": dict(n_step=5)}),
]

HAD3QN = [_DET_MATRIX, *_DET_MPE]  # HARL tuned_configs/pettingzoo_mpe/*-discrete/had3qn: 20 envs

PRESETS.update(haddpg=HADDPG, hatd3=HATD3, maddpg=HADDPG, matd3=HATD3, had3qn=HAD3QN)


# ---------------------------------------------------------------------------------------
# The value-based methods: pymarl's defaults are the config classes' (QMIX, VDN) and Soft-QMIX
# Tables 8-9's (Soft-QMIX); the MPE and SMAX rows are JaxMARL's tuned ql_rnn_{mpe,smax}.yaml.

_Q_MATRIX = Preset("matrix/*", dict(total_steps=10_000, n_envs=8, eval_interval=2_000, eval_episodes=10,
                                    epsilon_anneal_steps=2_000, batch_size=32, target_update_interval=20),
                   "no tuned file: one-step games; epsilon annealed over 2k steps, the target copied every 20 updates")
_Q_MPE = dict(n_envs=8, optimizer="radam", lr=5e-3, lr_decay=True, max_grad_norm=25.0, target_update_interval=200,
              learning_starts=10_000, gamma=0.9, epsilon_anneal_steps=100_000, eval_interval=20_000, eval_episodes=32)
_Q_MPE_NOTE = ("JaxMARL anneals epsilon over 10% of the run (1M of 10M steps), here over 100k steps; its sequences "
               "are 26 steps (its MPE's episodes), here 25 (ours)")
_Q_SMAX = dict(n_envs=16, sequence_length=128, optimizer="radam", lr=5e-5, max_grad_norm=10.0, target_update_interval=10,
               updates_per_block=8, learning_starts=10_000, reward_scale=10.0, hidden_dim=512,
               epsilon_anneal_steps=1_000_000, eval_interval=20_000, eval_episodes=32)
VDN = [_Q_MATRIX, *[Preset(f"{family}/*", _Q_MPE, _Q_MPE_NOTE) for family in ("mpe", "pz_mpe")], Preset("smax/*", _Q_SMAX)]
QMIX = [*VDN, *[Preset(f"{family}/*", dict(hypernet_embed=128)) for family in ("mpe", "pz_mpe")],
        Preset("smax/*", dict(mixing_embed_dim=64, hypernet_embed=256))]
SOFT_QMIX = [_Q_MATRIX, *[Preset(f"{family}/*", dict(eval_interval=20_000, eval_episodes=32)) for family in ("mpe", "smax")],
             Preset("mpe/*", dict(alpha=0.1, gamma=0.9),
                    "Soft-QMIX Table 3: alpha in {0.1, 0.3, 1.0} on MPE spread; gamma 0.9 as JaxMARL's MPE QMIX "
                    "(with 0.99 the soft values diverged on spread, docs/algorithms/value-based.md)"),
             Preset("smax/*", dict(mixer="sum", transform_embed=16, tau=1.0, target_update_interval=50,
                                   soft_target_action="sampled", gopt_weight=0.5),
                    "the authors' code's Soft-QMIX (their SMACv2 runs): with the paper's QMIX mixer and Polyak targets "
                    "the values diverge at gamma 0.99 on SMAX (docs/algorithms/value-based.md)")]

FOP = [_Q_MATRIX, *[Preset(f"{family}/*", dict(eval_interval=20_000, eval_episodes=32)) for family in ("mpe", "smax")]]

# ADER Appendix C, Table 1: (k_ratio, xi, alpha_init) per SMAC map, its SMAX namesakes
ADER = [*FOP, *[Preset(f"sma[xc]/{m}", dict(k_ratio=k, ader_xi=xi, alpha_init=alpha)) for m, (k, xi, alpha) in {
    "3m": (0.1, 0.9, 0.1353), "8m": (0.1, 0.9, 0.1353), "3s5z": (0.05, 0.9, 0.0498), "1c3s5z": (0.05, 0.9, 0.0498),
    "3s_vs_3z": (0.1, 0.9, 0.0498), "5m_vs_6m": (0.15, 0.5, 0.0498), "MMM2": (0.1, 0.9, 0.0821),
    "8m_vs_9m": (0.1, 0.9, 0.1353)}.items()]]

PRESETS.update(qmix=QMIX, vdn=VDN, soft_qmix=SOFT_QMIX, fop=FOP, ader=ADER)
