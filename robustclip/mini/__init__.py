"""The mini world (a toy image-caption world from sklearn's digits), mini-base, and the other mini models.

This file is written by hand (not exported from a notebook). Importing the package imports nothing else: each
name below is imported from its module on first use (`robustclip.core.lazy_exports`).
"""

from robustclip.core import lazy_exports

_PUBLIC = {
    # the world
    "mini_task": "world", "mini_captions": "world", "MINI_TASKS": "world",
    # mini-base, the tiny CLIP
    "pretrain_mini": "pretrain", "load_mini_base": "pretrain", "mini_base_dir": "pretrain",
    # the shipped fine-tunes
    "shipped_run": "finetunes", "unpack_run": "finetunes",
    # the mini LVLM and text-to-image model
    "load_mini_llava": "llava",
    "load_mini_t2i": "t2i",
}
__all__ = list(_PUBLIC)
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
