"""The algorithm registry: name -> class (``algorithms/base.py`` says what a class declares)."""
from meharl.algorithms.haa2c import HAA2C
from meharl.algorithms.happo import HAPPO
from meharl.algorithms.hasac import HASAC, HASACState
from meharl.algorithms.hatrpo import HATRPO
from meharl.algorithms.mappo import MAPPO

ALGORITHMS = {"hasac": HASAC, "happo": HAPPO, "hatrpo": HATRPO, "haa2c": HAA2C, "mappo": MAPPO}

__all__ = ["HASAC", "HASACState", "HAPPO", "HATRPO", "HAA2C", "MAPPO", "ALGORITHMS"]
