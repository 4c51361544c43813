"""meharl: maximum-entropy heterogeneous-agent reinforcement learning in JAX."""
__version__ = "0.1.0"
