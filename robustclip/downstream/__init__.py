"""Downstream models of a CLIP's text tower: text-to-image under adversarial prompts, and PEZ inversion.

This file is written by hand (not exported from a notebook). Importing the package imports nothing else: each
name below is imported from its module on first use (`robustclip.core.lazy_exports`).
"""

from robustclip.core import lazy_exports

_PUBLIC = {
    # text-to-image
    "TextToImage": "t2i", "load_t2i": "t2i", "register_t2i": "t2i", "available_t2i": "t2i", "swap_text": "t2i",
    "attack_prompts": "t2i",
    # embedding inversion
    "pez_invert": "inversion", "inversion_metrics": "inversion",
}
__all__ = list(_PUBLIC)
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
