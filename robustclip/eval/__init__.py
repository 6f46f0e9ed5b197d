"""Evaluations on one runner: zero-shot, text, retrieval, drift, TextFARE, LVLM, text-to-image, inversion.

This file is written by hand (not exported from a notebook). Importing the package imports nothing else: each
name below is imported from its module on first use (`robustclip.core.lazy_exports`).
"""

from robustclip.core import lazy_exports

_PUBLIC = {
    # one function per evaluation
    "eval_zeroshot": "zeroshot",
    "eval_text": "text",
    "eval_retrieval": "retrieval",
    "eval_drift": "drift",
    "eval_textfare": "textfare",
    "eval_vlm": "vlm",
    "eval_t2i": "t2i",
    "eval_inversion": "inversion",
    # the runner: what a new evaluation builds on
    "run_eval": "runner", "Adapter": "runner", "EvalRun": "runner", "eval_options": "runner", "Shards": "runner",
    "resolve_model": "runner", "resolve_task": "runner",
    # the per-sample sidecar
    "sidecar_path": "sidecar", "read_sidecar": "sidecar",
}
__all__ = list(_PUBLIC)
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
