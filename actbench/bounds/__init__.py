"""The bound engine: lower bounds of classification margins over input boxes (IBP, CROWN-IBP, CROWN).

Public API::

    margin_bounds(model, x, y, eps, method="ibp", lo=0., hi=1., bn_stats=None) -> BoundResult
    box_margin_bounds(model, lower, upper, y, method="ibp", bn_stats=None) -> BoundResult
    logit_bounds(model, x, eps, lo=0., hi=1., bn_stats=None) -> (lb, ub)
    subset_bounds(model, x, y, method, lo, hi, bn_stats) -> bound(idx, eps)  # one batch, many subsets
    clean_forward(model, x) -> (logits, bn_stats)
    with prepared(model): ...   # reuse the prepared layers of an unchanged model (cache.py)
"""

from actbench.bounds.api import (
    DEFAULT_CROWN_MAX_MEMORY,
    METHODS,
    BoundResult,
    box_margin_bounds,
    logit_bounds,
    margin_bounds,
    spec_matrix,
    subset_bounds,
)
from actbench.bounds.batchnorm import BNStats, clean_forward
from actbench.bounds.cache import prepared
from actbench.bounds.network import build_network

__all__ = [
    "DEFAULT_CROWN_MAX_MEMORY",
    "METHODS",
    "BNStats",
    "BoundResult",
    "box_margin_bounds",
    "build_network",
    "clean_forward",
    "logit_bounds",
    "margin_bounds",
    "prepared",
    "spec_matrix",
    "subset_bounds",
]
