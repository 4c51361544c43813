"""Algorithms: each is ``init / act / update`` pure functions on a state (DESIGN.md)."""
from meharl.algorithms.hasac import HASAC, Batch, HASACState

ALGORITHMS = {"hasac": HASAC}

__all__ = ["HASAC", "HASACState", "Batch", "ALGORITHMS"]
