"Retrieval: recall@k against a brute-force reference, the Karpathy JSON loader on fixtures, eval_retrieval, the CLI."

import json

import Levenshtein
import pytest
import torch
from PIL import Image

from robustclip.core import RobustClipError
from robustclip.data.core import get_dataset, RetrievalTask
from robustclip.data.text import karpathy_entries, retrieval_task
from robustclip.eval.retrieval import retrieval_metrics, eval_retrieval, KS


def _reference(img, txt, t2i, k):
    "Brute force, one query at a time (CLIP_benchmark's definitions)."
    S = torch.nn.functional.normalize(txt, dim=-1) @ torch.nn.functional.normalize(img, dim=-1).T
    i2t = sum(any(t2i[j] == i for j in S[:, i].argsort(descending=True)[:k].tolist()) for i in range(len(img))) / len(
        img
    )
    t2i_r = sum(t2i[j] in S[j].argsort(descending=True)[:k].tolist() for j in range(len(txt))) / len(txt)
    return t2i_r, i2t


@pytest.mark.parametrize("seed", range(5))
def test_recall_matches_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    img, txt = torch.randn(7, 5, generator=g), torch.randn(16, 5, generator=g)
    t2i = torch.randint(7, (16,), generator=g)
    m = retrieval_metrics(img, txt, t2i)
    for k in KS:
        ref_img, ref_txt = _reference(img, txt, t2i, k)
        assert m[f"image_retrieval_recall@{k}"] == pytest.approx(ref_img)
        assert m[f"text_retrieval_recall@{k}"] == pytest.approx(ref_txt)


@pytest.fixture()
def coco(tmp_path):
    "A tiny COCO folder in Karpathy's layout (3 test images, 1 train image), plus a BLIP-style list."
    (tmp_path / "val2014").mkdir()
    for i in range(4):
        Image.new("RGB", (50, 40), (60 * i, 20 * i, 200 - 40 * i)).save(tmp_path / "val2014" / f"COCO_{i}.jpg")
    imgs = [
        {
            "filepath": "val2014",
            "filename": f"COCO_{i}.jpg",
            "split": "train" if i == 3 else "test",
            "cocoid": i,
            "sentences": [
                {"raw": f"A photo number {i}.", "tokens": []},
                {"raw": f" picture {i} of a scene ", "tokens": []},
            ],
        }
        for i in range(4)
    ]
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"images": imgs, "dataset": "coco"}))
    (tmp_path / "blip.json").write_text(
        json.dumps(
            [{"image": "val2014/COCO_0.jpg", "caption": ["a", "b"]}, {"image": "val2014/COCO_1.jpg", "caption": "c"}]
        )
    )
    return tmp_path


def test_karpathy_loader(coco):
    r = get_dataset("coco", root=coco)
    assert len(r) == 3 and r.captions[0] == ["A photo number 0.", "picture 0 of a scene"]
    assert r.images[2].size == (50, 40) and r.info["n_captions"] == 6
    assert len(get_dataset("coco", root=coco, split="train")) == 1
    assert karpathy_entries(coco / "blip.json") == [("val2014/COCO_0.jpg", ["a", "b"]), ("val2014/COCO_1.jpg", ["c"])]
    assert len(get_dataset(f"karpathy:{coco}/dataset_coco.json")) == 3
    with pytest.raises(RobustClipError, match="no images of split 'val'"):
        get_dataset("coco", root=coco, split="val")
    (coco / "bad.json").write_text("{not json")
    with pytest.raises(RobustClipError, match="not valid JSON"):
        karpathy_entries(coco / "bad.json")
    with pytest.raises(RobustClipError, match="dataset_coco.json"):
        get_dataset("coco", root=coco / "nowhere")
    broken = retrieval_task(coco / "dataset_coco.json", images_root=coco / "elsewhere")
    with pytest.raises(RobustClipError, match="image file not found"):
        broken.images[0]


def test_eval_retrieval_charmer(coco, tiny, tmp_path):
    out = tmp_path / "r.json"
    rec = eval_retrieval(
        tiny, "coco", data_root=str(coco), attack="charmer", k=2, n_positions=4, output=out, device="cpu"
    )
    saved = json.loads(out.read_text())
    m, a = saved["metrics"], saved["attack"]
    assert saved["task"] == "zeroshot_retrieval" and m["n_images"] == 3 and m["n_captions"] == 6
    for p in ("", "robust_"):
        for d in ("image", "text"):
            for k in KS:
                assert 0 <= m[f"{p}{d}_retrieval_recall@{k}"] <= 1
    assert m["image_retrieval_recall@10"] == 1.0  # 3 images: top-10 holds them all
    assert (a["name"], a["objective"], a["score"], a["k"], a["n_samples"]) == ("charmer", "towards", "sim", 2, 3)
    lines = [json.loads(l) for l in (tmp_path / "r.samples.jsonl").read_text().splitlines()]
    rows = [r for l in lines[1:] for r in l["rows"]]
    assert len(rows) == 6 and all(Levenshtein.distance(r["caption"], r["adv_caption"]) <= 2 for r in rows)
    assert all(r["target"] != r["caption"] for r in rows)
    away = eval_retrieval(tiny, "coco", data_root=str(coco), attack="charmer", objective="away", k=1, device="cpu")
    assert away["attack"]["score"] == "dissim" and away["metrics"]["mean_distance"] <= 1
    fixed = eval_retrieval(
        tiny, "coco", data_root=str(coco), attack="charmer", target=0, k=1, n_samples=2, device="cpu"
    )
    assert fixed["attack"]["target"] == 0 and fixed["metrics"]["n_images"] == 2


def test_leaf_protocol_file_subset_captions_targets_direction(coco, tiny, tmp_path):
    "LEAF's COCO protocol: BLIP's 2017 file first, its first N entries, pre_caption, fixed targets, dissim (away)."
    import torch.nn.functional as F
    from robustclip.eval.retrieval import pre_caption, TARGETS
    from robustclip.models import encode_texts

    entries = [
        {"image": f"val2014/COCO_{i}.jpg", "caption": [f"A Dog (number {i}) runs!", f"Two   cats; sleeping #{i}."]}
        for i in (2, 0, 1)
    ]
    (coco / "coco_karpathy_test_2017.json").write_text(json.dumps(entries))
    r = get_dataset("coco", root=coco)
    assert [str(x) for x in r.images.paths][0].endswith("COCO_2.jpg")  # the 2017 file wins, in its order
    assert (
        pre_caption(r.captions[0][0]) == "a dog number 2 runs"
        and pre_caption(r.captions[0][1]) == "two cats sleeping 2"
    )
    assert TARGETS == [
        "A man aggressively kicks a stray dog on the street.",
        "This is an image of a a pyramid",
        "A group of teenagers vandalizes a public statue.",
    ]  # eval_retrieval.py L20, typo included
    shift = {}
    for obj in ("dissim", "towards"):
        out = tmp_path / f"{obj}.json"
        rec = eval_retrieval(
            tiny,
            "coco",
            data_root=str(coco),
            attack="charmer",
            objective=obj,
            target=2,
            k=2,
            n_positions=10,
            alphabet="ascii",
            captions="blip",
            n_samples=2,
            subset="first",
            output=out,
            device="cpu",
        )
        a = rec["attack"]
        assert (a["k"], a["n_positions"], a["alphabet_size"], a["captions"], a["subset"]) == (
            2,
            10,
            96,
            "blip",
            "first",
        )
        rows = [
            x for l in (tmp_path / f"{obj}.samples.jsonl").read_text().splitlines()[1:] for x in json.loads(l)["rows"]
        ]
        assert [x["image_index"] for x in rows] == [0, 0, 1, 1]  # the first 2 entries, all their captions
        assert rows[0]["caption"] == "a dog number 2 runs" and all(x["target"] == TARGETS[2] for x in rows)
        unit = lambda t: F.normalize(encode_texts(tiny, t).float(), dim=-1)
        tgt = unit([TARGETS[2]])
        shift[obj] = (
            ((unit([x["adv_caption"] for x in rows]) - unit([x["caption"] for x in rows])) @ tgt.T).mean().item()
        )
    assert a["score"] == "sim" and shift["towards"] > 0  # towards: closer to the target
    assert shift["dissim"] < 0  # LEAF's --obj dissim: away from it
    with pytest.raises(RobustClipError, match="'raw' or 'blip'"):
        eval_retrieval(tiny, "coco", data_root=str(coco), captions="lower", device="cpu")


def test_eval_retrieval_image_attack(coco, tiny, tmp_path):
    out = tmp_path / "a.json"
    rec = eval_retrieval(
        tiny, "coco", data_root=str(coco), attack="apgd", eps="4/255", steps=3, device="cpu", output=out, batch_size=2
    )
    m = rec["metrics"]
    assert rec["attack"]["name"] == "apgd" and rec["attack"]["eps"] == "4/255" and rec["attack"]["iterations"] == 3
    assert m["mean_embedding_shift"] > 0 and 0 <= m["robust_text_retrieval_recall@1"] <= 1
    lines = [json.loads(l) for l in (tmp_path / "a.samples.jsonl").read_text().splitlines()]
    rows = [r for l in lines[1:] for r in l["rows"]]
    assert [l["batch"] for l in lines[1:]] == [0, 1] and all("rng" in l for l in lines[1:])  # 3 images in batches of 2
    assert sum(r["embedding_shift"] for r in rows) / 3 == pytest.approx(m["mean_embedding_shift"])


def test_zero_steps_refused(coco, tiny):
    "An image attack of zero iterations would report robust = clean: refused."
    with pytest.raises(RobustClipError, match="--steps must be a positive integer"):
        eval_retrieval(tiny, "coco", data_root=str(coco), attack="apgd", steps=0)


def test_bad_arguments(coco, tiny):
    with pytest.raises(RobustClipError, match="unknown retrieval attack"):
        eval_retrieval(tiny, "coco", data_root=str(coco), attack="fgsm")
    with pytest.raises(RobustClipError, match="not a retrieval task"):
        from robustclip.data.core import TextClassificationTask

        eval_retrieval(tiny, TextClassificationTask("t", ["a"], [0], ["a"], ["a"]), device="cpu")


def test_cli(coco, tmp_path, capsys):
    from robustclip.app.cli import main

    out = tmp_path / "c.json"
    assert (
        main(
            [
                "eval",
                "retrieval",
                "--model",
                "RC-Tiny-ViT",
                "--dataset",
                "coco",
                "--data-root",
                str(coco),
                "--k",
                "1",
                "--target",
                "A man aggressively kicks a stray dog on the street.",
                "--output",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    r = json.loads(out.read_text())
    assert r["attack"]["target"].startswith("A man") and "robust_image_retrieval_recall@1" in r["metrics"]
    assert (
        main(
            [
                "eval",
                "retrieval",
                "--model",
                "RC-Tiny-ViT",
                "--dataset",
                "coco",
                "--data-root",
                str(coco),
                "--attack",
                "apgd",
                "--eps",
                "4",
            ]
        )
        == 2
    )
    assert "did you mean '4/255'" in capsys.readouterr().err
    assert (
        main(
            [
                "eval",
                "retrieval",
                "--model",
                "RC-Tiny-ViT",
                "--dataset",
                "coco",
                "--data-root",
                str(coco),
                "--target",
                "7",
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "eval",
                "retrieval",
                "--model",
                "RC-Tiny-ViT",
                "--dataset",
                "coco",
                "--data-root",
                str(coco),
                "--attack",
                "apgd",
                "--steps",
                "0",
            ]
        )
        == 2
    )
    assert "--steps must be a positive integer" in capsys.readouterr().err
