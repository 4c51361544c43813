"""HAA2C (HARL paper, Appendix G): the sequential template with the plain M-weighted
importance ratio r A M and no neighbourhood constraint (several epochs of it)."""
from __future__ import annotations

from dataclasses import dataclass

from meharl.algorithms.onpolicy import OnPolicyConfig, OnPolicyHA, ratio_surrogate
from meharl.config import key


@dataclass(frozen=True)
class HAA2CConfig(OnPolicyConfig):
    a2c_epoch: int = key(5, "actor epochs per iteration", "positive")


class HAA2C(OnPolicyHA):
    Config = HAA2CConfig
    description = "Heterogeneous-Agent A2C (HARL, JMLR 2024): sequential, unconstrained, M-weighted"

    def actor_epochs(self):
        return self.cfg.a2c_epoch

    def surrogate(self):
        return ratio_surrogate
