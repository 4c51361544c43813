"""HAPPO (HARL paper, Algorithm 4 / Appendix C): the sequential template with the clipped
surrogate min(r A M, clip(r, 1 - eps, 1 + eps) A M) as each agent's neighbourhood operator."""
from __future__ import annotations

from dataclasses import dataclass

from meharl.algorithms.onpolicy import OnPolicyConfig, OnPolicyHA, clipped_surrogate
from meharl.config import key


@dataclass(frozen=True)
class HAPPOConfig(OnPolicyConfig):
    ppo_epoch: int = key(5, "actor epochs per iteration", "positive")
    clip_param: float = key(0.2, "PPO clip range eps of the ratio", "positive")


class HAPPO(OnPolicyHA):
    Config = HAPPOConfig
    description = "Heterogeneous-Agent PPO (Kuba et al. 2022; HARL, JMLR 2024): sequential, clipped, M-weighted"

    def actor_steps_per_update(self):
        cfg = self.cfg
        return cfg.ppo_epoch * cfg.actor_num_mini_batch * (self.n if cfg.share_param else 1)

    def agent_update(self, params, opt, i, d, key, entropy_weight):
        return self.gradient_epochs(params, opt, i, d, key, entropy_weight, clipped_surrogate(self.cfg.clip_param),
                                    self.cfg.ppo_epoch)
