"CLIP_benchmark is the zero-shot suite's reference: its templates are used; `clip_benchmark build` reads our results."

import csv
import json
import sys
import warnings
from importlib.resources import files

import pytest
import torch

pytest.importorskip("clip_benchmark")

from robustclip.data.core import CLIP_BENCHMARK, clip_benchmark_templates, get_dataset, write_wds, write_image_folder
from robustclip.results import result_record, write_result

SUITE = [n for s, n in CLIP_BENCHMARK.items() if s != "imagenet1k-wds"]  # the 13 zero-shot datasets of FARE/TeCoA


def _cb_json(name: str) -> dict:
    return json.loads(files("clip_benchmark").joinpath(f"datasets/{name}.json").read_text())


def test_suite_templates_are_clip_benchmarks():
    "RobustVLM's fork: templates = en_zeroshot_classification_templates.json[last name part], else imagenet1k's."
    t = _cb_json("en_zeroshot_classification_templates")
    counts = {n.split("/")[-1]: len(clip_benchmark_templates(n)) for n in SUITE}
    assert counts == {
        "cifar10": 18,
        "cifar100": 18,
        "stl10": 2,
        "cars": 8,
        "caltech101": 34,
        "pets": 1,
        "flowers": 1,
        "dtd": 8,
        "eurosat": 3,
        "fgvc_aircraft": 2,
        "pcam": 2,
        "imagenet-r": 80,
        "imagenet_sketch": 80,
    }
    for n in SUITE:
        assert clip_benchmark_templates(n) == t.get(n.split("/")[-1], t["imagenet1k"])


def test_wds_task_uses_them(tmp_path):
    "A suite dataset takes clip-benchmark's templates over the folder's file; another wds folder keeps its own."
    write_wds(tmp_path / "wds_vtab-dtd", torch.rand(2, 3, 8, 8), [0, 1], ["a", "b"], templates=("folder {c}",))
    write_wds(tmp_path / "wds_mine", torch.rand(2, 3, 8, 8), [0, 1], ["a", "b"], templates=("folder {c}",))
    assert get_dataset("dtd", root=tmp_path).templates == _cb_json("en_zeroshot_classification_templates")["dtd"]
    assert get_dataset("wds/mine", root=tmp_path).templates == ["folder {c}"]


def test_imagenet_names_and_templates_are_clip_benchmarks(tmp_path):
    "ImageNet's class names and 80 templates (open_clip's) equal clip-benchmark's imagenet1k entries."
    import open_clip

    names, temps = (
        _cb_json("en_classnames")["imagenet1k"],
        _cb_json("en_zeroshot_classification_templates")["imagenet1k"],
    )
    assert (
        list(open_clip.IMAGENET_CLASSNAMES) == names
        and [t("{c}") for t in open_clip.OPENAI_IMAGENET_TEMPLATES] == temps
    )
    write_image_folder(tmp_path / "val", torch.rand(2, 3, 4, 4), [0, 1], ["n01", "n02"])
    assert get_dataset("imagenet", root=tmp_path).templates == temps


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    "A real clean evaluation of the tiny model (the runner's writer) and a synthetic robust record (`write_result`)."
    from robustclip.eval.zeroshot import eval_zeroshot

    d = tmp_path_factory.mktemp("cb")
    write_wds(
        d / "wds_vtab-cifar10",
        torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0)),
        [i % 2 for i in range(6)],
        ["cat", "dog"],
    )
    out = d / "res"
    clean = eval_zeroshot("RC-Tiny-ViT", "cifar10", data_root=str(d), batch_size=6, output=out / "clean.json")
    rob = result_record(
        dataset="wds/vtab/pets",
        model={"model": "ViT-L-14", "pretrained": "fare2.pt"},
        task="zeroshot",
        metrics={"acc1": 0.75, "acc5": 1.0, "robust_acc1": 0.5, "per_attack": {"apgd-ce": 0.5}, "n": 4},
        attack={"name": "apgd-ce", "eps": "2/255", "n_samples": 4},
        subset="clip-benchmark",
    )
    write_result(rob, out / "rob.json")
    return out, clean, rob


def test_clip_benchmark_build_reads_our_results(results, tmp_path, monkeypatch):
    "`clip_benchmark build RESULTS --output t.csv` (its CLI, in-process): one row per JSON, metrics as columns."
    from clip_benchmark.cli import main

    out, clean, rob = results
    monkeypatch.setattr(sys, "argv", ["clip_benchmark", "build", str(out), "--output", str(tmp_path / "t.csv")])
    main()
    rows = {r["dataset"]: r for r in csv.DictReader(open(tmp_path / "t.csv"))}
    assert set(rows) == {"wds/vtab/cifar10", "wds/vtab/pets"}
    c, r = rows["wds/vtab/cifar10"], rows["wds/vtab/pets"]
    assert (c["model"], c["task"], c["language"]) == ("RC-Tiny-ViT", "zeroshot_classification", "en")
    assert float(c["acc1"]) == pytest.approx(clean["metrics"]["acc1"]) and c["n"] == "6"
    assert c["model_fullname"] == f"RC-Tiny-ViT {c['pretrained']}"
    assert (r["model_fullname"], float(r["acc1"]), float(r["robust_acc1"]), r["subset"]) == (
        "ViT-L-14 fare2.pt",
        0.75,
        0.5,
        "clip-benchmark",
    )
