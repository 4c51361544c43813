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

    def actor_epochs(self):
        return self.cfg.ppo_epoch

    def surrogate(self):
        return clipped_surrogate(self.cfg.clip_param)
