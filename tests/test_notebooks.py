"Execute every library notebook in nbs/ (the same runner as nbdev-test), one pytest test per notebook."
from pathlib import Path

import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as run_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "nbs").glob("*.ipynb") if not p.name.startswith(("_", ".")))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook(nb: Path):
    cfg = get_config(ROOT)
    flags = cfg.tst_flags.split() if isinstance(cfg.tst_flags, str) else list(cfg.tst_flags)
    ok, secs = run_notebook(nb, skip_flags=flags, basepath=cfg.config_path)
    assert ok, f"{nb.name} failed after {secs:.1f}s (traceback above)"
