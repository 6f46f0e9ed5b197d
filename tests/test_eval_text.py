"Text classification: CSV loaders on fixtures, label images, eval_text's JSON and JSONL sidecar, bad input, the CLI."

import json
from pathlib import Path

import Levenshtein
import pytest
import torch
from PIL import Image

from robustclip.core import RobustClipError
from robustclip.data.core import get_dataset, TextClassificationTask
from robustclip.data.text import read_text_csv, text_classification_task, load_label_images
from robustclip.eval.text import eval_text, class_embeddings, predict_texts
from robustclip.eval.sidecar import sidecar_path


@pytest.fixture()
def ag(tmp_path):
    "An AG-News-like folder: the HF export, the original headerless CSV with classes.txt, and label images."
    (tmp_path / "ag_news").mkdir()
    (tmp_path / "ag_news" / "test.csv").write_text(
        'text,label\n"Stocks rally as oil slips, traders say",2\nTeam wins the cup in extra time,1\n'
        '"Leaders meet in Geneva for talks",0\nNew chip doubles battery life,3\n,1\n'
    )
    (tmp_path / "orig").mkdir()
    (tmp_path / "orig" / "test.csv").write_text(
        '"3","Wall St. Bears","Short-sellers see green"\n"4","Chips","Faster"\n'
    )
    (tmp_path / "orig" / "classes.txt").write_text("World\nSports\nBusiness\nSci/Tech\n")
    imgs = tmp_path / "ag_news" / "label_images"
    imgs.mkdir()
    for i, name in enumerate(["0", "sports", "business", "sci_tech"]):
        Image.new("RGB", (60, 40), (60 * i, 100, 30)).save(imgs / f"{name}.jpg")
    return tmp_path


def test_csv_layouts(ag):
    t = get_dataset("ag_news", root=ag)
    assert t.labels == [2, 1, 0, 3, 1] and t.classnames == ["World", "Sports", "Business", "Sci/Tech"]
    assert t.label_prompts[3] == "Science and Technology News" and t.texts[4] == ""
    assert t.label_images.shape == (4, 3, 224, 224) and 0 <= t.label_images.min() <= t.label_images.max() <= 1
    o = get_dataset(f"textcsv:{ag}/orig/test.csv")
    assert (
        o.labels == [2, 3]
        and o.texts[0] == "Wall St. Bears Short-sellers see green"
        and o.label_prompts[2] == "Business"
    )
    assert read_text_csv(ag / "orig" / "test.csv")[2] is True  # 1-based labels detected


def test_csv_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence,y\nhello,0\n")
    with pytest.raises(RobustClipError, match="expected a header"):
        read_text_csv(bad)
    bad.write_text("text,label\nhello,7\n")
    with pytest.raises(RobustClipError, match="class names are needed"):
        text_classification_task(bad)
    with pytest.raises(RobustClipError, match="outside the 2 classes"):
        text_classification_task(bad, classnames=["a", "b"])
    with pytest.raises(RobustClipError, match="not found"):
        read_text_csv(tmp_path / "missing.csv")
    with pytest.raises(RobustClipError, match="fancyzhx/ag_news"):
        get_dataset("ag_news", root=tmp_path)
    with pytest.raises(RobustClipError, match="no data root"):
        get_dataset("ag_news")


def test_label_images_by_list_and_errors(ag):
    files = sorted((ag / "ag_news" / "label_images").iterdir())
    x = load_label_images(",".join(map(str, files[:2])), ["a", "b"], size=32)
    assert x.shape == (2, 3, 32, 32)
    with pytest.raises(RobustClipError, match="one per class"):
        load_label_images([files[0]], ["a", "b"])
    with pytest.raises(RobustClipError, match="no image for classes"):
        load_label_images(ag / "ag_news" / "label_images", ["x", "y"])


def test_eval_text_record_and_sidecar(ag, tiny, tmp_path):
    out = tmp_path / "r.json"
    rec = eval_text(tiny, "ag_news", data_root=str(ag), k=2, n_positions=5, output=out, device="cpu", batch_size=256)
    saved = json.loads(out.read_text())
    assert {"dataset", "model", "pretrained", "task", "metrics", "attack", "versions"} <= set(saved)
    assert saved["task"] == "zeroshot_text_classification" and saved["dataset"] == "ag_news"
    m, a = saved["metrics"], saved["attack"]
    assert 0 <= m["robust_acc1"] <= m["acc1"] <= 1 and m["n"] == 5
    assert (a["name"], a["k"], a["n_positions"], a["n_samples"], a["seed"], a["label_encoder"]) == (
        "charmer",
        2,
        5,
        5,
        0,
        "image",
    )
    assert a["alphabet_size"] > 10
    lines = [json.loads(l) for l in sidecar_path(out).read_text().splitlines()]
    assert lines[0]["kind"] == "robustclip.samples" and [l["batch"] for l in lines[1:]] == [0]
    rows = [r for l in lines[1:] for r in l["rows"]]
    assert [r["text"] for r in rows] == [get_dataset("ag_news", root=ag).texts[int(r["index"])] for r in rows]
    assert all(Levenshtein.distance(r["text"], r["adv_text"]) <= 2 for r in rows)
    task = get_dataset("ag_news", root=ag)
    W = class_embeddings(tiny, task, "image")
    pred, _ = predict_texts(tiny, [r["adv_text"] for r in rows], W, [int(r["label"]) for r in rows])
    assert pred.tolist() == [int(r["adv_prediction"]) for r in rows]  # the CSV's adversarial predictions are real
    acc = sum(int(r["adv_prediction"]) == int(r["label"]) for r in rows) / len(rows)
    assert acc == pytest.approx(m["robust_acc1"])


def test_bad_input_texts(tiny):
    long = "a very long article about markets " * 30
    texts = ["", "   ", "naïve café ☕ résumé", "🙂🙂🙂", long, "ab"]
    task = TextClassificationTask("bad", texts, [0, 1, 0, 1, 0, 1], ["red", "blue"], ["red", "blue"])
    rec = eval_text(tiny, task, k=5, label_encoder="text", device="cpu", samples=None)  # k larger than "ab"
    assert rec["metrics"]["n"] == 6
    clean = eval_text(tiny, task, attack="none", label_encoder="text", device="cpu")
    assert "robust_acc1" not in clean["metrics"] and clean["metrics"]["acc1"] == rec["metrics"]["acc1"]
    with pytest.raises(RobustClipError, match="no label images"):
        eval_text(tiny, task, device="cpu")
    from robustclip.data.core import RetrievalTask

    with pytest.raises(RobustClipError, match="not a text classification task"):
        eval_text(tiny, RetrievalTask("r", [], []), device="cpu")


def test_subset_first_and_random(tiny):
    task = TextClassificationTask(
        "s", [f"text {i}" for i in range(10)], [i % 2 for i in range(10)], ["a", "b"], ["a", "b"]
    )
    r1 = eval_text(tiny, task, attack="none", label_encoder="text", n_samples=3, subset="first", device="cpu")
    assert r1["n_samples"] == 3
    with pytest.raises(RobustClipError, match="subset"):
        eval_text(tiny, task, label_encoder="text", subset="last", device="cpu")


def test_cli(ag, tmp_path, capsys):
    from robustclip.app.cli import main

    out = tmp_path / "c.json"
    assert (
        main(
            [
                "eval",
                "text",
                "--model",
                "RC-Tiny-ViT",
                "--dataset",
                "ag_news",
                "--data-root",
                str(ag),
                "--k",
                "1",
                "--n-samples",
                "3",
                "--output",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    r = json.loads(out.read_text())
    assert {"acc1", "robust_acc1"} <= set(r["metrics"]) and r["attack"]["n_samples"] == 3
    assert "robust_acc1" in capsys.readouterr().out
    assert (
        main(["eval", "text", "--model", "RC-Tiny-ViT", "--dataset", "ag_news", "--data-root", str(tmp_path / "none")])
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err
    assert (
        main(["eval", "text", "--model", "RC-Tiny-ViT", "--dataset", "ag_news", "--data-root", str(ag), "--k", "-1"])
        == 2
    )
    assert "--k must be an integer >= 0" in capsys.readouterr().err


def test_leaf_agnews_protocol_first_texts_train_alphabet(ag, tiny):
    "LEAF: the first N test texts, and Charmer's alphabet from the TRAIN split and deletion (data_AT.py L144-5, L218)."
    from robustclip.attacks.charmer import DELETE
    from robustclip.eval.text import text_alphabet

    (ag / "ag_news" / "train.csv").write_text('text,label\n"Only-in-train: ~ZQ| symbols",0\nplain words here,1\n')
    chars, src = text_alphabet("train", "ag_news", str(ag))
    assert (
        src == "train" and DELETE in chars and {"~", "Z", "Q", "|"} <= set(chars) and "G" not in chars
    )  # 'G'eneva: test only
    rec = eval_text(
        tiny,
        "ag_news",
        data_root=str(ag),
        k=1,
        n_positions=3,
        label_encoder="text",
        alphabet="train",
        n_samples=3,
        subset="first",
        device="cpu",
    )
    assert (rec["attack"]["alphabet"], rec["attack"]["alphabet_size"], rec["attack"]["subset"]) == (
        "train",
        len(chars),
        "first",
    )
    assert rec["metrics"]["n"] == 3
    with pytest.raises(RobustClipError, match="by name"):
        text_alphabet("train", TextClassificationTask("t", ["a"], [0], ["a"], ["a"]))
