"""actbench: benchmark suite and leaderboard for certified training of neural networks."""

from actbench.errors import ActbenchError

__version__ = "0.1.0"
__all__ = ["ActbenchError", "__version__"]
