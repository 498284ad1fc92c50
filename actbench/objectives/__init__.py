"""Training objectives, one small module per method, registered by name (DESIGN §5).

``load_method(name_or_path, track_name, overrides)`` resolves a method spec (``methods/*.toml``,
``baselines/*.toml`` or a user's TOML) and ``create_objective(spec, track)`` builds its objective.
"""

from actbench.objectives import (  # noqa: F401  (importing registers the objectives)
    adaptive,
    crown_ibp,
    ibp,
    mtl_ibp,
    pgd,
    sabr,
    standard,
)
from actbench.objectives.base import (
    Objective,
    Param,
    StepContext,
    list_objectives,
    objective_class,
    register_objective,
)
from actbench.objectives.spec import MethodSpec, create_objective, list_methods, load_method

__all__ = [
    "MethodSpec", "Objective", "Param", "StepContext", "create_objective", "list_methods", "list_objectives",
    "load_method", "objective_class", "register_objective",
]  # fmt: skip
