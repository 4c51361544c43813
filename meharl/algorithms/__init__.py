"""The algorithm registry: name -> class (``algorithms/base.py`` says what a class declares)."""
from meharl.algorithms.ader import ADER
from meharl.algorithms.fop import FOP
from meharl.algorithms.haa2c import HAA2C
from meharl.algorithms.had3qn import HAD3QN
from meharl.algorithms.haddpg import HADDPG, HATD3, MADDPG, MATD3
from meharl.algorithms.happo import HAPPO
from meharl.algorithms.hasac import HASAC, HASACState
from meharl.algorithms.hatrpo import HATRPO
from meharl.algorithms.mappo import MAPPO
from meharl.algorithms.qmix import QMIX, VDN
from meharl.algorithms.soft_qmix import SoftQMIX

ALGORITHMS = {"hasac": HASAC, "happo": HAPPO, "hatrpo": HATRPO, "haa2c": HAA2C, "mappo": MAPPO,
              "haddpg": HADDPG, "hatd3": HATD3, "maddpg": MADDPG, "matd3": MATD3, "had3qn": HAD3QN,
              "qmix": QMIX, "vdn": VDN, "soft_qmix": SoftQMIX, "fop": FOP,
              "ader": ADER}

__all__ = ["HASAC", "HASACState", "HAPPO", "HATRPO", "HAA2C", "MAPPO", "HADDPG", "HATD3", "MADDPG", "MATD3", "HAD3QN",
           "QMIX", "VDN", "SoftQMIX", "FOP", "ADER", "ALGORITHMS"]
