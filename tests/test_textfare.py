"""The brute-force character attack (LEAF's `attack_text_bruteforce`) and the TextFARE evaluation (`eval_textfare.py`)
on the mini text task: the enumeration, the metric against a direct computation, resume, the CLI."""

import json

import Levenshtein
import pytest
import torch

from robustclip.core import RobustClipError
from robustclip.attacks.charmer import get_alphabet, n_slots, embedding_objective, DELETE
from robustclip.attacks.bruteforce import bruteforce, bruteforce_candidates
from robustclip.attacks.leaf import WordConstraint
from robustclip.eval.textfare import eval_textfare


def test_bruteforce_enumeration_count_and_ball():
    "(2|S|+1)·|Γ| candidates in the reference's order (slot-major), whose distinct members are the Levenshtein-1 ball."
    chars = get_alphabet("xy")  # delete, x, y
    c = bruteforce_candidates("xyz", chars)
    assert len(c) == n_slots("xyz") * 3 == 21
    assert c[:3] == ["xyz", "xxyz", "yxyz"]  # gap 0: delete (= the text), insert x, insert y
    assert c[3:6] == ["yz", "yz", "yyz"]  # slot 1 holds 'x': delete, x again (= delete), y
    assert all(Levenshtein.distance(s, "xyz") <= 1 for s in c) and len(set(c)) == 14
    assert bruteforce_candidates("", chars) == ["", "x", "y"]  # an empty text: one gap


def test_bruteforce_finds_the_exact_best_single_edit(tiny):
    "On a real text encoder, brute force's objective equals the maximum over every candidate scored one by one."
    texts = ["a red two", "blue"][:2]
    anchors = tiny.encode_text(texts).detach()
    obj = embedding_objective(tiny, anchors, "l2")
    r = bruteforce(texts, obj, alphabet="abe ", batch_size=7)
    for j, t in enumerate(texts):
        cands = bruteforce_candidates(t, get_alphabet("abe "))
        best = obj(cands, torch.full((len(cands),), j)).max()
        assert r.scores[j].item() == pytest.approx(best.item(), rel=1e-5, abs=1e-6)
        assert r.distance[j] <= 1 and r.queries[j] == len(set(cands)) + 1
    assert r.info["candidates"] == sum(n_slots(t) * 5 for t in texts)


def test_bruteforce_constraint_and_bad_input():
    wc = WordConstraint({"cat", "dog", "cot"})
    fav = lambda t, o: torch.tensor([1.0 if s == "cot dog" else 0.1 * s.count("o") for s in t])
    assert bruteforce(["cat dog"], fav, alphabet="o", constraint=wc).texts[0] != "cot dog"
    with pytest.raises(RobustClipError, match="texts must be strings"):
        bruteforce([3], fav)
    with pytest.raises(RobustClipError, match="batch_size"):
        bruteforce(["a"], fav, batch_size=0)


@pytest.mark.parametrize("attack", ["leaf", "charmer", "bruteforce"])
def test_textfare_on_mini_text(mini_base, tiny, tmp_path, attack):
    "TextFARE of a perturbed mini-base against mini-base on mini/text: the metric recomputed by hand; rerun resumes."
    from robustclip.models import load_clip

    tuned = load_clip("mini-base")
    tuned.model.load_state_dict(mini_base.model.state_dict())
    with torch.no_grad():
        for p in tuned.model.transformer.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    out = tmp_path / "tf.json"
    rec = eval_textfare(
        tuned,
        "mini/text",
        anchor=mini_base,
        attack=attack,
        rho=5,
        alphabet="aeo ",
        n_samples=4,
        chunk=2,
        device="cpu",
        output=out,
    )
    rows = [
        r for line in (tmp_path / "tf.samples.jsonl").read_text().splitlines()[1:] for r in json.loads(line)["rows"]
    ]
    assert len(rows) == rec["metrics"]["n"] == 4 and rec["task"] == "textfare" and rec["attack"]["name"] == attack
    texts, adv = [r["text"] for r in rows], [r["adv_text"] for r in rows]
    with torch.no_grad():
        ref, own, e = mini_base.encode_text(texts), tuned.encode_text(texts), tuned.encode_text(adv)
    torch.testing.assert_close(
        torch.tensor([r["textfare_clean"] for r in rows]), (ref - own).pow(2).sum(-1), rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(
        torch.tensor([r["textfare_adv"] for r in rows]), (ref - e).pow(2).sum(-1), rtol=1e-4, atol=1e-5
    )
    assert rec["metrics"]["textfare_clean"] == pytest.approx(sum(r["textfare_clean"] for r in rows) / 4)
    assert all(Levenshtein.distance(a, t) <= 1 for a, t in zip(adv, texts)) and rec["metrics"]["attack_objective"] > 0
    again = eval_textfare(
        tuned,
        "mini/text",
        anchor=mini_base,
        attack=attack,
        rho=5,
        alphabet="aeo ",
        n_samples=4,
        chunk=2,
        device="cpu",
        output=out,
    )
    assert again["metrics"] == rec["metrics"] and again["resumed_batches"] == 2


def test_textfare_cli(tmp_path, capsys):
    from robustclip.app.cli import main

    assert (
        main(
            [
                "eval",
                "textfare",
                "--model",
                "mini-base",
                "--dataset",
                "mini/text",
                "--attack",
                "charmer",
                "--rho",
                "3",
                "--n-samples",
                "2",
                "--output",
                str(tmp_path / "t.json"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    r = json.loads((tmp_path / "t.json").read_text())
    assert (r["attack"]["name"], r["attack"]["rho"], r["metrics"]["n"], r["metrics"]["textfare_clean"]) == (
        "charmer",
        3,
        2,
        0.0,
    )
    assert "textfare_adv" in capsys.readouterr().out
    assert (
        main(
            [
                "eval",
                "textfare",
                "--model",
                "mini-base",
                "--dataset",
                "mini/text",
                "--attack",
                "bruteforce",
                "--rho",
                "3",
            ]
        )
        == 2
    )
    with pytest.raises(SystemExit):  # argparse's choices
        main(["eval", "textfare", "--model", "mini-base", "--dataset", "mini/text", "--attack", "pgd"])
