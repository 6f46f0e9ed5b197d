"The paper templates and `robustclip reproduce`: parameters cells, tag survival, the smoke pipeline end to end, the paper plan."
import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = sorted((ROOT / "nbs" / "paper").glob("*.ipynb"))


def _params_cell(path: Path) -> dict:
    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{path.name}: expected exactly one cell tagged 'parameters'"
    return cells[0]


def test_every_artifact_has_a_template():
    from robustclip.reproduce import TEMPLATES as NAMES
    assert sorted(p.stem for p in TEMPLATES) == sorted(NAMES)


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_parameters_cell_is_typed_commented_and_literal(path):
    "Every parameter is `name: type = literal  # comment`; nothing is derived in the parameters cell."
    src = "".join(_params_cell(path)["source"])
    for line in src.strip().splitlines():
        assert "#" in line, f"{path.name}: parameter without a comment: {line}"
    for node in ast.parse(src).body:
        assert isinstance(node, ast.AnnAssign), f"{path.name}: not a typed assignment: {ast.unparse(node)}"
        ast.literal_eval(node.value)   # raises on anything computed


def test_parameters_tags_survive_nbdev_clean(tmp_path):
    "nbdev-clean strips cell metadata unless pyproject allows 'tags': the papermill tag must survive."
    shutil.copytree(ROOT / "nbs" / "paper", tmp_path / "nbs" / "paper")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    nb = tmp_path / "nbs" / "paper" / "table4_zeroshot.ipynb"
    d = json.loads(nb.read_text()); d["cells"][0]["metadata"]["noise"] = 1; nb.write_text(json.dumps(d))
    exe = Path(sys.executable).parent / "nbdev-clean"
    subprocess.run([str(exe), "--fname", str(nb)], cwd=tmp_path, check=True, capture_output=True)
    cleaned = json.loads(nb.read_text())
    assert "noise" not in cleaned["cells"][0]["metadata"]                    # it did clean
    assert _params_cell(nb)["metadata"]["tags"] == ["parameters"]


def test_paper_dry_run_lists_every_run_with_its_needs(capsys):
    from robustclip.reproduce import reproduce
    reproduce(ROOT, "paper", dry_run=True)
    out = capsys.readouterr().out
    for run in ["tecoa2", "tecoa4", "fare2", "fare4", "simclip2", "simclip4", "leaf"]:
        assert f"train/{run} " in out
    assert "fare4.yaml" in out and "weights: ViT-L-14 openai" in out and "data: imagenet" in out
    assert "GPU-hours" in out


def test_unknown_scale_and_only_are_clear_errors(tmp_path):
    from robustclip.core import RobustClipError
    from robustclip.reproduce import reproduce
    with pytest.raises(RobustClipError, match="scales with a plan: mini, paper"):
        reproduce(ROOT, "huge", dry_run=True)
    with pytest.raises(RobustClipError, match="matches no step"):
        reproduce(ROOT, "mini", only="no-such-step", smoke=True, runs=tmp_path / "runs", figures=tmp_path / "fig", log=lambda s: None)


def test_smoke_reproduction_end_to_end(tmp_path, mini_base):
    "Every step of the mini plan with tiny settings, every template through papermill; a rerun is all cached."
    from robustclip.reproduce import reproduce, TEMPLATES as NAMES
    runs, fig = tmp_path / "runs", tmp_path / "figures"
    status = reproduce(ROOT, "mini", smoke=True, runs=runs, figures=fig, log=lambda s: None)
    assert set(status.values()) == {"ran"}
    for name in NAMES:
        assert (fig / f"{name}.md").exists() and (fig / f"{name}.csv").exists(), name
        assert "mini scale" in (fig / f"{name}.md").read_text().splitlines()[0]
    for png in ["table4_zeroshot", "leaf_fig1_domains", "leaf_fig3_ablation", "leaf_fig4_k"]:
        assert (fig / f"{png}.png").stat().st_size > 1000
    table4 = (fig / "table4_zeroshot.csv").read_text()
    assert "clean" in table4 and "16/255" in table4
    again = reproduce(ROOT, "mini", smoke=True, runs=runs, figures=fig, log=lambda s: None)
    assert set(again.values()) == {"cached"}
