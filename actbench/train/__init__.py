"""Training engine: one trainer for every method, with budgets, eps/LR schedules, selection and resume.

Public entry point: :func:`train` (returns :class:`TrainResult`).
"""

from actbench.train.schedules import EpsSchedule, make_lr_scheduler
from actbench.train.trainer import TrainResult, train

__all__ = ["EpsSchedule", "TrainResult", "make_lr_scheduler", "train"]
