"""The rehearsal of the paper plan (`robustclip.plan.rehearsal`): the rehearsal plan is the paper plan but for its
model, data and count fields; one rehearsed step of every kind and every template on CPU; `robustclip doctor` on an
empty data root and on the fixture root. The whole rehearsal runs under `make test-slow` (ROBUSTCLIP_FULL_REHEARSAL)."""

import os
import shutil
import time
from pathlib import Path

import pytest

from robustclip.plan.build import Context, build_plan
from robustclip.plan.rehearsal import (
    COUNT_KEYS,
    CPU_PRECISION,
    DATA_KEYS,
    MODEL_KEYS,
    REHEARSAL_SCALE,
    REHEARSAL_THREADS,
    RUN_COUNT_KEYS,
    RUN_MODEL_KEYS,
    plan_differences,
    shrink,
    write_rehearsal_fixtures,
)
from robustclip.plan.run import reproduce

ROOT = Path(__file__).resolve().parents[1]
FULL = os.environ.get("ROBUSTCLIP_FULL_REHEARSAL") == "1"  # make test-slow
CONTEXT = {"threads", "results_dir", "figures_dir", "scale"}  # the machine and the output folder, not the plan
# (precision, also the machine's without CUDA, is checked on its own below)
ONE_OF_EACH = [  # one rehearsed step of every kind (and what it needs: the base model)
    "train/fare4-b32",  # the cheapest fine-tune (ViT-B/32: 50 tokens)
    "zeroshot/base/wds-vtab-cifar10/2",
    "drift/base/imagenet/4",
    "text/base/ag_news/k1",
    "textfare/base/ag_news/charmer",
    "retrieval/base/coco/apgd",
    "vlm/base/vlm-coco/clean",
    "vlm/base/vlm-pope-random/clean",
    "vlm/base/vlm-coco/ensemble2",
    "vlm/base/vlm-coco/target0-2",
    "vlm/base/vlm-coco/of-clean",  # OpenFlamingo-9B's rows (FARE Table 1, Sim-CLIP's table)
    "vlm/base/vlm-vqav2/of-ensemble2",
    "t2i/base/t2i-coco/charmer",
    "inversion/base/pez-coco/pez",
]


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    "`robustclip fixtures --scale paper D`: the datasets in their released layouts and the stand-in models."
    return write_rehearsal_fixtures(ROOT, tmp_path_factory.mktemp("fixtures") / "D")


def _standin(value, root: Path) -> bool:
    "Whether a model field names a stand-in under the fixture root (or is the tag a stand-in drops)."
    return value is None or value in ("None", "null") or str(root / "models") in str(value)


def _counted(key: str, a, b) -> bool:
    "Whether b is a's count under the rule (a targets list: its first shrink(len) entries)."
    if isinstance(a, list):
        return b == a[: shrink(len(a))]
    return int(b) == shrink(int(a))


def test_rehearsal_plan_is_the_paper_plan_but_models_data_and_counts(fixture_root):
    "Step by step, each setting the rehearsal changes is a model (stand-in), the data root or a count (by the rule)"
    paper, reh = Context(ROOT, "paper"), Context(ROOT, "paper", rehearse=True, data_root=str(fixture_root))
    steps = build_plan(paper)
    d = plan_differences(steps, build_plan(reh), (str(paper.runs), str(reh.runs)))
    configs = {s.name: _config(s) for s in steps if s.kind == "train"}  # a run's counts live in its config file
    assert d["only_b"] == []
    n_targets = len(_plan("paper")["vlm_targeted"]["targets"])
    cut = [n for n in d["only_a"] if "/target" not in n and "/charmer-t" not in n]
    assert cut == [] and len(d["only_a"]) == 7 * 2 * (n_targets - shrink(n_targets)) + 4 * (3 - shrink(3))
    models = (
        set(MODEL_KEYS) | {t for t in MODEL_KEYS.values() if t} | set(RUN_MODEL_KEYS) | set(RUN_MODEL_KEYS.values())
    )
    counts, seen = set(COUNT_KEYS) | set(RUN_COUNT_KEYS), set()
    for step, diffs in d["fields"].items():
        for key, a, b in diffs:
            seen.add(key)
            if key in models or key in ("spec", "text_encoder"):
                assert _standin(b, fixture_root) or str(b).startswith("('local-dir:RUNS"), (step, key, b)
                if key == "spec":
                    assert a[0].startswith("local-dir:RUNS") == b[0].startswith("local-dir:RUNS"), step
            elif key in counts:
                a = configs[step][key] if step in configs and a is None else a
                assert _counted(key, a, b), (step, key, a, b)
            elif key in DATA_KEYS:
                assert a is None and Path(b) == fixture_root.resolve(), (step, key, a, b)
            elif key == "threads":
                assert (a, b) == (None, REHEARSAL_THREADS) or (a, int(b)) == (None, REHEARSAL_THREADS), (step, a, b)
            elif key == "precision":  # the machine's: 16-bit evaluations in fp32 without CUDA
                assert b == (CPU_PRECISION.get(a, a) if not reh.cuda else a), (step, a, b)
            elif key == "scale":
                assert (a, b) == ("paper", REHEARSAL_SCALE)
            elif key == "deps":
                assert set(b) <= set(a) and set(a) - set(b) <= set(d["only_a"]), step
            else:
                assert key in CONTEXT, (step, key, a, b)
    assert {"lvlm", "spec", "n_samples", "steps", "iterations", "data_root", "model", "batch_size", "targets"} <= seen


def _leaves(x, path=()):
    "Every (key path, value) of a nested plan."
    if isinstance(x, dict):
        return [kv for k, v in x.items() for kv in _leaves(v, path + (k,))]
    return [(path, x)]


def test_rehearse_changes_only_model_data_and_count_keys_of_the_plan(fixture_root):
    "`rehearse` on the plan YAML: each key it changes is a model, count or data key (runs: overrides)"
    from robustclip.plan.rehearsal import rehearse

    paper = _plan("paper")
    a, b = dict(_leaves(paper)), dict(_leaves(rehearse(paper, ROOT, fixture_root)))
    changed = {p for p in set(a) | set(b) if a.get(p) != b.get(p)}
    keys = set(MODEL_KEYS) | {t for t in MODEL_KEYS.values() if t} | set(COUNT_KEYS) | set(DATA_KEYS) | {"overrides"}
    assert {p[-1] for p in changed} <= keys, {p[-1] for p in changed} - keys
    assert all(p[0] == "runs" for p in changed if p[-1] == "overrides")


def _config(step) -> dict:
    "The resolved config of a paper run, method_args flattened as `method_args.KEY`."
    from robustclip.train.config import config_dict, load_config

    c = config_dict(load_config(step.files[0], step.settings["overrides"]))
    return {**c, **{f"method_args.{k}": v for k, v in c["method_args"].items()}}


def _plan(scale: str) -> dict:
    import yaml

    return yaml.safe_load((ROOT / "configs" / scale / "reproduce.yaml").read_text())


@pytest.mark.rehearsal
@pytest.mark.skipif(not FULL, reason="make test-slow (ROBUSTCLIP_FULL_REHEARSAL=1): keeps make test within 10 minutes")
def test_one_rehearsed_step_of_every_kind_and_every_template(fixture_root, tmp_path):
    "Training, every evaluation kind (LLaVA and OpenFlamingo: clean, ensemble; transfer, targeted, POPE; T2I; PEZ)."
    from robustclip.results import load_results

    ctx = Context(ROOT, "paper", rehearse=True, data_root=str(fixture_root), runs=tmp_path / "runs")
    t0, lines = time.time(), []
    status = reproduce(ctx, only=",".join(ONE_OF_EACH), log=lines.append, workers=1)
    assert {n for n, v in status.items() if v == "ran"} >= set(ONE_OF_EACH)
    # the transfer kind shows the base's adversarial images to another tower: TeCoA2's stand-in here is the base's
    # stand-in copied (training it would add a minute; `train/fare4-b32` rehearsed the training kind)
    shutil.copytree(fixture_root / "models" / "ViT-L-14-openai", ctx.runs / "tecoa2" / "final")
    status = reproduce(ctx, exact=["vlm/tecoa2/vlm-coco/transfer-base2"], log=lines.append, workers=1)
    assert status["vlm/tecoa2/vlm-coco/transfer-base2"] == "ran"
    names = list(_plan("paper")["templates"])  # every template, on what those steps measured
    templates = [f"notebook/{n}" for n in names]
    status = reproduce(ctx, exact=templates, log=lines.append, workers=2)
    assert all(status[t] == "ran" for t in templates)
    records = load_results(ctx.results)
    kinds = {r["task"] for r in records}
    want = {"zeroshot_classification", "zeroshot_text_classification", "zeroshot_retrieval", "inversion", "t2i"}
    assert want <= kinds, kinds
    attacks = {(r.get("attack") or {}).get("name") for r in records if r["task"].startswith("lvlm")}
    assert {None, "ensemble", "transfer", "targeted"} <= attacks, attacks
    of = [r for r in records if str(r.get("vlm", "")).startswith("open-flamingo:")]
    assert {(r["task"], (r.get("attack") or {}).get("name")) for r in of} == {
        ("lvlm_caption", None),
        ("lvlm_vqa", "ensemble"),
    }
    table = (ctx.figures / "fare_table1_lvlm.md").read_text()
    assert of[0]["vlm"] in table and "vlm/coco clean" in table  # OpenFlamingo's block of rows, LLaVA's below
    for name in names:
        md = (ctx.figures / f"{name}.md").read_text()
        assert REHEARSAL_SCALE in md.splitlines()[0] or REHEARSAL_SCALE in md, name  # every caption says so
    print(f"one step of every kind and {len(names)} templates: {time.time() - t0:.0f} s")


def _doctor(args: list[str], capsys) -> tuple[int, str]:
    from robustclip.app.cli import main

    rc = main(["doctor", "--root", str(ROOT), *args])
    return rc, capsys.readouterr().out


def test_doctor_on_an_empty_root_lists_every_missing_input(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache: no weight is here
    rc, out = _doctor(["--scale", "paper", "--data-root", str(tmp_path)], capsys)
    assert rc == 2
    rows = {l.split("  ")[0]: l for l in out.splitlines() if l.startswith(("data: ", "weights: "))}
    for name in [
        "imagenet train",
        "imagenet val",
        "ag_news test",
        "coco test",
        "vlm/vqav2 test",
        "vlm/pope/random test",
    ]:
        assert "MISSING" in rows[f"data: {name}"], name
    assert "wds/vtab/pcam test" in " ".join(rows) and "captions:datacomp_small train" in " ".join(rows)
    for w in [
        "ViT-L-14 openai",
        "hf-hub:chs20/fare2-clip",
        "llava-hf:llava-hf/llava-1.5-7b-hf",
        "open-flamingo:openflamingo/OpenFlamingo-9B-vitl-mpt7b",
        "ViT-B-16 openai",
    ]:
        assert "MISSING" in rows[f"weights: {w}"] and (
            "hf download" in rows[f"weights: {w}"] or "open_clip" in rows[f"weights: {w}"]
        )
    shipped = {"data: pez/coco test"}  # LEAF's PEZ captions ship with robustclip: present on any root
    assert all("ok" in rows[k] for k in shipped) and all("MISSING" in r for k, r in rows.items() if k not in shipped)
    assert "GPU-hours" in out.splitlines()[-1]


def test_doctor_on_the_fixture_root_finds_everything(fixture_root, capsys):
    rc, out = _doctor(["--scale", "paper", "--data-root", str(fixture_root)], capsys)
    assert rc == 0, out
    assert "fixture root" in out.splitlines()[0] and "MISSING" not in out


def test_doctor_at_mini_scale_needs_no_gpu(capsys):
    "The mini plan runs on CPU: its doctor checks the mini inputs, no paper stand-in or GPU memory estimate."
    rc, out = _doctor(["--scale", "mini"], capsys)
    assert rc == 0, out
    assert "none needed: the mini plan runs on CPU" in out and "GPU-hours" not in out


@pytest.mark.rehearsal
@pytest.mark.skipif(os.environ.get("ROBUSTCLIP_FULL_REHEARSAL") != "1", reason="the whole rehearsal: make test-slow")
def test_full_rehearsal(tmp_path):
    "`robustclip fixtures --scale paper D && robustclip reproduce --scale paper --rehearse --data-root D`, every step."
    import subprocess
    import sys

    t0 = time.time()
    exe = [sys.executable, "-m", "robustclip"]
    subprocess.run([*exe, "fixtures", "--scale", "paper", str(tmp_path / "D")], cwd=ROOT, check=True)
    cmd = [
        *exe,
        "reproduce",
        "--scale",
        "paper",
        "--rehearse",
        "--data-root",
        str(tmp_path / "D"),
        "--runs",
        str(tmp_path / "runs"),
    ]
    subprocess.run(cmd, cwd=ROOT, check=True)
    for name in _plan("paper")["templates"]:
        assert REHEARSAL_SCALE in (tmp_path / "runs" / "figures" / f"{name}.md").read_text(), name
    print(f"the whole rehearsal: {time.time() - t0:.0f} s")
