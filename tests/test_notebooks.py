"Execute every library notebook in nbs/ (the same runner as nbdev-test), one pytest test per notebook."

import importlib
from pathlib import Path

import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as run_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "nbs").glob("*.ipynb") if not p.name.startswith(("_", ".")))


# A notebook runs in this process: its export cells define the module's functions and classes again and register them
# (a `VLMTask` class of the notebook's own, say), which would leak into the tests that run after it in the same worker.
# Every plugin is imported first (so the registries hold the library's objects), and each registry is put back after.
REGISTRIES = [
    ("robustclip.data.core", "_REGISTRY"),
    ("robustclip.models", "_MODELS"),
    ("robustclip.vlm.core", "_LVLMS"),
    ("robustclip.downstream.t2i", "_T2I"),
    ("robustclip.downstream.t2i", "_JUDGES"),
    ("robustclip.attacks.registry", "_ATTACKS"),  # kind -> Registry: each kind's registry is copied too
]


@pytest.fixture(autouse=True)
def keep_registries():
    from robustclip.core import load_plugins

    load_plugins()
    saved = {}
    for mod, name in REGISTRIES:
        try:
            reg = getattr(importlib.import_module(mod), name)
            saved[mod, name] = {k: type(v)(v) if isinstance(v, dict) else v for k, v in reg.items()}
        except ImportError:
            pass  # an optional part that is not installed
    yield
    for (mod, name), entries in saved.items():
        reg = getattr(importlib.import_module(mod), name)
        reg.clear()
        reg.update(entries)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook(nb: Path):
    cfg = get_config(ROOT)
    flags = cfg.tst_flags.split() if isinstance(cfg.tst_flags, str) else list(cfg.tst_flags)
    ok, secs = run_notebook(nb, skip_flags=flags, basepath=cfg.config_path)
    assert ok, f"{nb.name} failed after {secs:.1f}s (traceback above)"
