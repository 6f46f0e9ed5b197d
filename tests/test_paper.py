"""The paper templates and `robustclip reproduce`: parameters cells and the plan's `templates` section, tag survival,
the smoke pipeline end to end, the paper plan."""

import ast
import json
import re
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


def _plan_templates(scale: str) -> dict:
    import yaml

    return yaml.safe_load((ROOT / "configs" / scale / "reproduce.yaml").read_text())["templates"]


@pytest.mark.parametrize("scale", ["mini", "paper"])
def test_every_template_is_in_the_plan_with_declared_parameters(scale):
    "Each plan runs every template once, claims last, and passes only parameters the template declares."
    from robustclip.plan.build import CONTEXT_PARAMS, Context, notebook_params, template_parameters

    names = list(_plan_templates(scale))
    assert sorted(names) == sorted(p.stem for p in TEMPLATES) and names[-1] == "claims"
    for name, declared in _plan_templates(scale).items():
        known = template_parameters(ROOT / "nbs" / "paper" / f"{name}.ipynb")
        assert set(CONTEXT_PARAMS) <= set(known), name
        params = notebook_params(Context(ROOT, scale), name, declared)  # raises on an undeclared parameter
        assert set(params) == set(CONTEXT_PARAMS) | set(declared)
        assert all(type(params[k]) is type(known[k]) for k in declared), name  # the types the template expects


RUN_LOG_TEMPLATES = {"training_loss"}  # read the runs' training logs (metrics.jsonl), not result records


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_templates_find_results_by_their_fields(path):
    "No template spells a result file name: they query records (robustclip.results), never paths or slugs."
    code = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    if path.stem in RUN_LOG_TEMPLATES:
        code = code.replace('"metrics.jsonl"', "")
    else:
        assert "from robustclip.results import" in code and "select_result(" in code
    code = re.sub(
        r'Path\(figures_dir\)\s*/\s*"[a-z_]+\.json"', "", code
    )  # a template's own output beside its table is fine
    code = re.sub(r"\b[a-z]+__[a-z_]+\s*=", "", code)  # query keywords into nested fields (attack__target=) are fine
    for spelled in ["read_results", "slug", "__", ".json", "robustclip.app"]:
        assert spelled not in code, f"{path.name} uses {spelled!r}"


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_parameters_cell_is_typed_commented_and_literal(path):
    "Every parameter is `name: type = literal  # comment`; nothing is derived in the parameters cell."
    src = "".join(_params_cell(path)["source"])
    for line in src.strip().splitlines():
        assert "#" in line, f"{path.name}: parameter without a comment: {line}"
    for node in ast.parse(src).body:
        assert isinstance(node, ast.AnnAssign), f"{path.name}: not a typed assignment: {ast.unparse(node)}"
        ast.literal_eval(node.value)  # raises on anything computed


def test_parameters_tags_survive_nbdev_clean(tmp_path):
    "nbdev-clean strips cell metadata unless pyproject allows 'tags': the papermill tag must survive."
    shutil.copytree(ROOT / "nbs" / "paper", tmp_path / "nbs" / "paper")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    nb = tmp_path / "nbs" / "paper" / "table4_zeroshot.ipynb"
    d = json.loads(nb.read_text())
    d["cells"][0]["metadata"]["noise"] = 1
    nb.write_text(json.dumps(d))
    exe = Path(sys.executable).parent / "nbdev-clean"
    subprocess.run([str(exe), "--fname", str(nb)], cwd=tmp_path, check=True, capture_output=True)
    cleaned = json.loads(nb.read_text())
    assert "noise" not in cleaned["cells"][0]["metadata"]  # it did clean
    assert _params_cell(nb)["metadata"]["tags"] == ["parameters"]


def test_paper_dry_run_lists_every_run_with_its_needs(capsys):
    from robustclip.plan.build import Context
    from robustclip.plan.run import reproduce

    reproduce(Context(ROOT, "paper"), dry_run=True)
    out = capsys.readouterr().out
    for run in ["tecoa2", "tecoa4", "fare2", "fare4", "simclip2", "simclip4", "leaf"]:
        assert f"train/{run} " in out
    assert "fare4.yaml" in out and "weights: ViT-L-14 openai" in out and "data: imagenet" in out
    assert "GPU-hours" in out


def test_unknown_scale_and_only_are_clear_errors(tmp_path):
    from robustclip.core import RobustClipError
    from robustclip.plan.build import Context
    from robustclip.plan.run import reproduce

    with pytest.raises(RobustClipError, match="scales with a plan: mini, paper"):
        reproduce(Context(ROOT, "huge"), dry_run=True)
    ctx = Context(ROOT, "mini", runs=tmp_path / "runs", figures=tmp_path / "fig", smoke=True)
    with pytest.raises(RobustClipError, match="matches no step"):
        reproduce(ctx, only="no-such-step", log=lambda s: None)


def test_smoke_reproduction_end_to_end(tmp_path, mini_base):
    "Every step of the mini plan with tiny settings, every template through papermill; a rerun is all cached."
    from robustclip.plan.build import Context
    from robustclip.plan.run import reproduce
    from robustclip.results import load_results, select_result

    runs, fig, lines = tmp_path / "runs", tmp_path / "figures", []
    ctx = Context(ROOT, "mini", runs=runs, figures=fig, smoke=True)
    status = reproduce(ctx, log=lines.append, workers=1)  # every step here
    assert set(status.values()) == {"ran"}
    timing = lines[-2].splitlines()  # the runner's per-step wall times
    assert timing[0].split() == ["step", "seconds", "share"] and timing[-1].startswith("total")
    assert len(timing) == len(status) + 2
    records = load_results(runs / "results")
    assert len(records) == sum(
        name.split("/")[0] in ("zeroshot", "drift", "text", "retrieval", "vlm", "t2i", "inversion") for name in status
    )
    plan_models = {
        "base",
        "tecoa2",
        "tecoa4",
        "fare2",
        "fare4",
        "simclip2",
        "simclip4",
        "leaf",
        "leaf-rho10",
        "leaf-unconstrained",
        "fare2+leaf",
    }
    assert {r["run"] for r in records} == plan_models  # every record names its plan model
    r = select_result(records, run="fare4", task="zeroshot", dataset="mini/layout", eps="20/255")
    assert r["model"].startswith("local-dir:") and r["model"].endswith("fare4/final")
    assert f"| 20/255 · FARE4 | {100 * r['metrics']['robust_acc1']:.1f} |" in (fig / "table4_zeroshot.md").read_text()
    for name in _plan_templates("mini"):
        assert (fig / f"{name}.md").exists() and (fig / f"{name}.csv").exists(), name
        assert "mini scale" in (fig / f"{name}.md").read_text().splitlines()[0]
    g = select_result(records, run="leaf", task="t2i", dataset="mini/retrieval")
    assert g["metrics"]["n"] == 2 and g["text_encoder"]["model"].endswith("leaf/final")
    assert select_result(records, run="base", task="inversion")["metrics"]["n"] == 2
    for png in ["table4_zeroshot", "leaf_fig1_domains", "leaf_fig3_ablation", "leaf_fig4_k", "leaf_t2i_grid"]:
        assert (fig / f"{png}.png").stat().st_size > 1000
    v = select_result(records, run="fare4", task="lvlm_caption", dataset="mini/captions", attack=None)
    assert v["vlm"] == "mini-llava" and v["vision"]["model"].endswith("fare4/final") and v["metrics"]["n"] == 8
    e = select_result(
        records, run="fare4", task="lvlm_caption", dataset="mini/captions", attack="ensemble", eps="20/255"
    )
    t = select_result(
        records, run="fare4", task="lvlm_caption", dataset="mini/captions", attack="transfer", eps="20/255"
    )
    assert (
        "robust_cider" in e["metrics"]
        and t["attack"]["source_attack"] == "ensemble"
        and t["transfer_from"]["vision"]["model"] == "mini-base"
    )
    table4 = (fig / "table4_zeroshot.csv").read_text()
    assert "clean" in table4 and "20/255" in table4
    again = reproduce(ctx, log=lambda s: None)
    assert set(again.values()) == {"cached"}
    # the shipped fine-tunes were unpacked, as `make reproduce` does; --retrain trains them (here one, two steps)
    rt = Context(ROOT, "mini", runs=tmp_path / "retrain", figures=tmp_path / "fig-rt", smoke=True, retrain=True)
    status = reproduce(rt, exact=["train/fare2"], log=lambda s: None, workers=1)
    assert status["train/fare2"] == "ran" and (tmp_path / "retrain" / "fare2" / "final").is_dir()


def test_a_group_process_writes_the_records_this_process_writes(tmp_path, mini_base):
    "One model's evaluations in a group worker process give the records of running them here."
    from robustclip.plan.build import Context
    from robustclip.plan.run import reproduce
    from robustclip.results import load_results

    only, got, logs = "zeroshot/base/mini-color,text/base/mini-text", {}, {}
    for workers in (2, 1):
        runs, logs[workers] = tmp_path / f"w{workers}", []
        ctx = Context(ROOT, "mini", runs=runs, figures=runs / "fig", smoke=True)
        status = reproduce(ctx, only=only, log=logs[workers].append, workers=workers)
        assert {n for n, v in status.items() if v == "ran"} >= {
            "zeroshot/base/mini-color/clean",
            "text/base/mini-text/k1",
        }
        got[workers] = {
            (r["task"], r["dataset"], json.dumps(r.get("attack"), sort_keys=True)): r["metrics"]
            for r in load_results(runs / "results")
        }
    assert any(l.startswith("evals/base (4 steps)") for l in logs[2][-2].splitlines())  # the group ran as one unit
    assert not any("evals/" in l for l in logs[1][-2].splitlines())
    assert len(got[1]) == 4 and got[2] == got[1]


def test_retrieval_table_averages_charmer_over_targets(tmp_path):
    "LEAF averages Charmer retrieval over its three fixed targets: one record per target, the table shows the mean."
    import papermill as pm
    from robustclip.results import write_result

    res = tmp_path / "results"
    for t, r1 in enumerate([0.1, 0.2, 0.6]):
        write_result(
            {
                "task": "zeroshot_retrieval",
                "dataset": "coco",
                "run": "base",
                "model": "ViT-L-14",
                "attack": {"name": "charmer", "objective": "dissim", "target": t, "k": 2},
                "metrics": {
                    "image_retrieval_recall@1": 0.5,
                    "robust_image_retrieval_recall@1": r1,
                    "image_retrieval_recall@5": 0.8,
                    "robust_image_retrieval_recall@5": 0.7,
                },
            },
            res / f"charmer-t{t}.json",
        )
    pm.execute_notebook(
        str(ROOT / "nbs/paper/retrieval_table.ipynb"),
        str(tmp_path / "out.ipynb"),
        kernel_name="python3",
        language="python",
        parameters=dict(
            results_dir=str(res), figures_dir=str(tmp_path / "fig"), scale="paper", models=["base"], dataset="coco"
        ),
        progress_bar=False,
        cwd=str(ROOT),
    )
    md = (tmp_path / "fig" / "retrieval_table.md").read_text()
    assert "averaged over 3 fixed target caption(s)" in md and "objective dissim" in md
    row = next(l for l in md.splitlines() if l.startswith("| CLIP"))
    assert "| 30.0 |" in row and "| 50.0 |" in row  # mean of 10, 20, 60 %; clean R@1 unchanged


def test_claims_verdicts_respect_the_seed_margins(tmp_path):
    "A difference counts only beyond its kind's seed margin: holds / not shown / does not hold; claims.json records it."
    import papermill as pm
    from robustclip.results import write_result

    res = tmp_path / "results"
    clean = {"base": 0.90, "fare2": 0.80, "tecoa2": 0.77}  # FARE2 - TeCoA2 = 3 points, clean avg ZS
    for m, acc in clean.items():
        for ds in ("mini/color", "mini/size"):
            write_result(
                {
                    "task": "zeroshot_classification",
                    "dataset": ds,
                    "run": m,
                    "model": m,
                    "attack": None,
                    "metrics": {"acc1": acc},
                },
                res / f"{m}-{ds[5:]}.json",
            )
    row = "FARE2 keeps clean zero-shot transfer better than TeCoA2"
    verdicts = {}
    for margin in (1.0, 5.0):
        fig = tmp_path / f"fig{margin}"
        pm.execute_notebook(
            str(ROOT / "nbs/paper/claims.ipynb"),
            str(tmp_path / "out.ipynb"),
            kernel_name="python3",
            language="python",
            progress_bar=False,
            cwd=str(ROOT),
            parameters=dict(
                results_dir=str(res),
                figures_dir=str(fig),
                scale="mini",
                datasets=["mini/layout", "mini/color", "mini/size"],
                source="mini/layout",
                margins={"avg ZS clean": margin},
            ),
        )
        line = next(l for l in (fig / "claims.md").read_text().splitlines() if l.startswith(f"| {row}"))
        verdicts[margin] = line.rstrip(" |").rsplit("|", 1)[1].strip()
        diffs = json.loads((fig / "claims.json").read_text())["differences"][row]
        assert diffs == [{"kind": "avg ZS clean", "d": pytest.approx(3.0)}]
    assert verdicts == {1.0: "holds", 5.0: "not shown (within seed margin)"}
    # the same 3 points against the claim: TeCoA2 ahead
    for ds in ("mini/color", "mini/size"):
        write_result(
            {
                "task": "zeroshot_classification",
                "dataset": ds,
                "run": "tecoa2",
                "model": "tecoa2",
                "attack": None,
                "metrics": {"acc1": 0.83},
            },
            res / f"tecoa2-{ds[5:]}.json",
        )
    fig = tmp_path / "against"
    pm.execute_notebook(
        str(ROOT / "nbs/paper/claims.ipynb"),
        str(tmp_path / "out.ipynb"),
        kernel_name="python3",
        language="python",
        progress_bar=False,
        cwd=str(ROOT),
        parameters=dict(
            results_dir=str(res),
            figures_dir=str(fig),
            scale="mini",
            source="mini/layout",
            datasets=["mini/layout", "mini/color", "mini/size"],
            margins={"avg ZS clean": 1.0},
        ),
    )
    line = next(l for l in (fig / "claims.md").read_text().splitlines() if l.startswith(f"| {row}"))
    assert line.rstrip(" |").endswith("does not hold") and "avg ZS clean ±1" in line


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_papermill_itself_parses_every_parameter(path, caplog):
    "papermill's own parser finds every parameter with its type: none is silently left out when it injects them."
    import nbformat
    from papermill.translators import papermill_translators

    src = "".join(_params_cell(path)["source"])
    cell = nbformat.from_dict({**_params_cell(path), "source": src})
    ours = {n.target.id: ast.literal_eval(n.value) for n in ast.parse(src).body}
    with caplog.at_level("WARNING", logger="papermill"):
        seen = {p.name: p for p in papermill_translators.find_translator("python3", "python").inspect(cell)}
    assert not caplog.records, [r.getMessage() for r in caplog.records]  # "Unable to parse line ..."
    assert set(seen) == set(ours), f"{path.name}: papermill does not see {sorted(set(ours) - set(seen))}"
    for name, p in seen.items():
        assert p.inferred_type_name == type(ours[name]).__name__, (path.name, name, p.inferred_type_name)
        assert ast.literal_eval(p.default) == ours[name], (path.name, name, p.default)


def test_template_kernels_keep_their_notices_out_of_the_log(tmp_path, capfd):
    "A template run prints nothing of the kernel's own (its TCP notice), and an unparseable parameter would show."
    import nbformat

    from robustclip.plan.build import run_template

    c = nbformat.v4.new_code_cell("x: int = 1  # a parameter\nfigures_dir: str = \"figures\"  # where figures go")
    c.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[c, nbformat.v4.new_code_cell("print(x * 2)")])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    tpl = tmp_path / "t.ipynb"
    nbformat.write(nb, tpl)
    run_template(ROOT, tpl, tmp_path / "out.ipynb", {"x": 21, "figures_dir": str(tmp_path / "f")})
    out, err = capfd.readouterr()
    assert "Kernel is running over TCP" not in out + err and "IPKernelApp" not in out + err, err
    ran = nbformat.read(tmp_path / "out.ipynb", 4)
    assert ran.cells[-1].outputs[0]["text"] == "42\n"
