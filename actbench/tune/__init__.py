"""``actbench tune``: a multi-objective search of each method's trade-off front, with equal budgets.

Each method declares a search space (the ``[search]`` table of its TOML, :mod:`actbench.objectives.search`).
Every method gets the same number of trials; each trial is an ordinary run (:func:`actbench.runner.execute_run`:
same run id, card and resume rules), scored on validation only (clean accuracy and certified accuracy or
ACR at the track's eps of the selected epoch), with the test split sealed while it trains and is scored.
Optuna's multi-objective samplers choose the parameters; the study lives in SQLite under the results
folder, so a killed tune continues where it stopped. The front of each method is selected on validation
and reported with its hypervolume on validation and on test.

Modules: :mod:`~actbench.tune.plan` (validation, study identity), :mod:`~actbench.tune.study` (Optuna
storage, samplers, lock), :mod:`~actbench.tune.trial` (one trial), :mod:`~actbench.tune.driver` (the
ask/tell loop on the sweep's executors), :mod:`~actbench.tune.fronts` (fronts and hypervolumes).
Optuna is imported only when a tune runs.

    from actbench.tune import plan_tune, run_tune

    plan = plan_tune(["adaptive", "ibp"], "fashion-mnist", trials=20, preset="quick")
    summary = run_tune(plan, executor="local", jobs=2)     # summary.report: fronts and hypervolumes
"""

from actbench.tune.driver import TuneSummary, run_tune, tune_status
from actbench.tune.plan import OBJECTIVES, SAMPLERS, TunePlan, plan_tune

__all__ = ["OBJECTIVES", "SAMPLERS", "TunePlan", "TuneSummary", "plan_tune", "run_tune", "tune_status"]
