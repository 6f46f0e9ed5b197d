"Shared pytest setup: CPU only, quiet progress bars, the repo root, and the cached mini-base model."

import os
from pathlib import Path

os.environ.setdefault("ROBUSTCLIP_PROGRESS", "0")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("ROBUSTCLIP_HOME", str(ROOT / ".cache" / "robustclip"))

import pytest
import torch

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or max(1, min(2, os.cpu_count() or 1))))


@pytest.fixture(scope="session")
def root() -> Path:
    "The repository root."
    return ROOT


@pytest.fixture(scope="session")
def mini_base():
    "The mini-base CLIP (pretrained once per cache, then loaded from it)."
    from robustclip.models import load_clip

    return load_clip("mini-base")


@pytest.fixture(scope="session")
def tiny():
    "A random RC-Tiny-ViT (seconds to build; for mechanics, not accuracy)."
    from robustclip.models import load_clip

    torch.manual_seed(0)
    return load_clip("RC-Tiny-ViT")


LONG_POLES = (
    "test_smoke_reproduction_end_to_end",
    "test_two_processes_equal_one",
    "test_wheel_installs_and_runs_alone",
    "test_a_new_attack_is_one_file_and_one_registration",
)  # the longest (half a minute to minutes each), longest first: started first, so no worker waits on them at the end.
# Only tests whose module has no module-scoped fixture: one moved away from its module's other tests would make
# pytest build that fixture again (the card module's 60-s card was built three times)


def pytest_collection_modifyitems(config, items):
    "Run the longest tests first (xdist hands tests out in collection order), the rest in their usual order."
    rank = {name: i for i, name in enumerate(LONG_POLES)}
    items.sort(key=lambda it: rank.get(it.name, len(LONG_POLES)))
