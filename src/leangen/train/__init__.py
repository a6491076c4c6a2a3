"""Training: one loop with the shared machinery (``loop``) and objectives per task (``gan``, ...).

Python use::

    from leangen.train import TrainOptions, train
    result = train(TrainOptions(preset="stylegan2-tiny32", data="openmoji", kimg=50))
    print(result.run_dir, result.snapshot)
"""
from leangen.train.loop import NonFiniteLossError, TrainingError, TrainingLoop, TrainResult, train
from leangen.train.objective import Objective, get_objective
from leangen.train.options import TrainOptions, resolve_options

__all__ = ["NonFiniteLossError", "Objective", "TrainOptions", "TrainResult", "TrainingError", "TrainingLoop",
           "get_objective", "resolve_options", "train"]
