"""Vision-language models in pixel space: the LVLM interface and backends, their datasets, metrics and attacks.

This file is written by hand (not exported from a notebook). Importing the package imports nothing else: each
name below is imported from its module on first use (`robustclip.core.lazy_exports`).
"""

from robustclip.core import lazy_exports

_PUBLIC = {
    # LVLMs by name
    "LVLM": "core", "load_lvlm": "core", "register_lvlm": "core", "available_lvlms": "core", "swap_vision": "core",
    "task_prompt": "core",
    # datasets
    "VLMTask": "data", "vlm_dataset": "data",
    # metrics
    "cider": "metrics", "vqa_accuracy": "metrics", "pope_scores": "metrics",
    # attacks on an LVLM's image
    "apgd_text": "attacks", "ensemble_attack": "attacks", "targeted_attack": "attacks",
}
__all__ = list(_PUBLIC)
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
