"""Adversarial fine-tuning: configs, methods (FARE, TeCoA, Sim-CLIP, LEAF), the loop, run folders.

This file is written by hand (not exported from a notebook). Importing the package imports nothing else: each
name below is imported from its module on first use (`robustclip.core.lazy_exports`).
"""

from robustclip.core import lazy_exports

_PUBLIC = {
    # the job
    "train": "loop", "Trainer": "loop",
    # configs
    "TrainConfig": "config", "load_config": "config", "make_config": "config", "apply_overrides": "config",
    "config_dict": "config",
    # methods and their losses
    "register_method": "methods", "available_methods": "methods", "get_method": "methods", "Method": "methods",
    "ImageMethod": "methods", "training_attack": "methods", "FARE": "methods", "TeCoA": "methods", "SimCLIP":
    "methods",
    "FARELoss": "losses", "TeCoALoss": "losses", "SimCLIPLoss": "losses",
    "LEAF": "leaf",
    # run folders
    "RunFolder": "runs", "run_folder": "runs", "read_run_checkpoint": "runs",
    # data parallelism
    "GlobalBatchSampler": "distributed",
}
__all__ = list(_PUBLIC)
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
