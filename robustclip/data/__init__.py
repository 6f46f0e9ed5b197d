"""Tasks by name: image classification, text classification, retrieval and captions, in one registry.

This file is written by hand (not exported from a notebook). Importing the package imports nothing else: each
name below is imported from its module on first use (`robustclip.core.lazy_exports`).
"""

from robustclip.core import lazy_exports

_PUBLIC = {
    # the registry
    "get_dataset": "core", "register_dataset": "core", "available_datasets": "core", "select_samples": "core",
    # the tasks
    "ClassificationTask": "core", "TextClassificationTask": "core", "RetrievalTask": "core",
    "CaptionTask": "text",
}
__all__ = list(_PUBLIC)
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
