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

    def actor_steps_per_update(self):
        cfg = self.cfg
        return cfg.a2c_epoch * cfg.actor_num_mini_batch * (self.n if cfg.share_param else 1)

    def agent_update(self, params, opt, i, d, key, entropy_weight):
        return self.gradient_epochs(params, opt, i, d, key, entropy_weight, ratio_surrogate, self.cfg.a2c_epoch)
