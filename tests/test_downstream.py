"LEAF's downstream evaluations: text-to-image under adversarial prompts (tiny random SD pipeline on CPU) and PEZ inversion."

import json

import pytest
import torch

pytest.importorskip("diffusers")
from robustclip.app.cli import main
from robustclip.attacks.leaf import WordConstraint
from robustclip.core import RobustClipError
from robustclip.downstream.inversion import corpus_bleu, pez_invert, token_accuracy, word_accuracy
from robustclip.downstream.t2i import SDText2Image, attack_prompts, clip_score, load_t2i, swap_text, tiny_sd_pipeline
from robustclip.eval.inversion import eval_inversion
from robustclip.eval.t2i import eval_t2i
from robustclip.models import create_clip, model_config

CAPS = ["a large red digit seven in the top left", "a small blue two on a gray background", "a green number"]


@pytest.fixture(scope="module")
def tiny():
    return create_clip(model_config("RC-Tiny-ViT"), name="tiny", seed=0)


@pytest.fixture(scope="module")
def sd(tiny, tmp_path_factory):
    return SDText2Image(tiny_sd_pipeline(tiny, tmp_path_factory.mktemp("tok")), name="sd:tiny", steps=2, guidance=2.0)


def test_tiny_sd_pipeline_generates_and_swaps(sd, tiny):
    a = sd.generate(CAPS[:2], seeds=[3, 4])
    assert a.shape == (2, 3, 16, 16) and a.dtype == torch.uint8
    assert (sd.generate(CAPS[:1], seeds=[3]).int() - a[:1].int()).abs().max() <= 2  # per-prompt seeded noise
    other = create_clip(model_config("RC-Tiny-ViT"), name="other", seed=7)
    swap_text(sd, other)
    try:
        assert sd.spec["model"] == "other" and not torch.equal(sd.generate(CAPS[:1], seeds=[3]), a[:1])
        # the swapped encoder's pooled output is the open_clip tower's end-token state (before projection)
        got = sd.encode_text(CAPS) @ other.model.text_projection
        torch.testing.assert_close(got, other.encode_text(CAPS), rtol=1e-4, atol=1e-4)
    finally:
        swap_text(sd, tiny)
    wide = create_clip(
        {**model_config("RC-Tiny-ViT"), "text_cfg": {**model_config("RC-Tiny-ViT")["text_cfg"], "width": 32}}
    )
    with pytest.raises(RobustClipError, match="32-wide"):
        swap_text(sd, wide)


def test_attack_is_bounded_constrained_and_effective(sd):
    adv = attack_prompts(sd, CAPS[:2], k=2, n_positions=3, alphabet="abcxyz ")
    import Levenshtein

    wc = WordConstraint()
    for a, c in zip(adv, CAPS):
        assert 0 < Levenshtein.distance(a, c) <= 2 and wc.count(a) < wc.count(c)
    cos = (sd.encode_text(adv, True) * sd.encode_text(CAPS[:2], True)).sum(-1)
    assert (cos < 1 - 1e-6).all()


def test_eval_t2i_end_to_end_and_resume(sd, tiny, tmp_path):
    f = tmp_path / "caps.txt"
    f.write_text("\n".join(CAPS) + "\n")
    kw = dict(
        text_encoder=tiny,
        judge=tiny,
        k=1,
        n_positions=1,
        alphabet="x",
        n_samples=2,
        batch_size=1,
        n_examples=2,
        output=tmp_path / "r.json",
        device="cpu",
    )
    rec = eval_t2i(sd, f"captions:{f}", **kw)
    m = rec["metrics"]
    assert m["n"] == 2 and rec["task"] == "t2i" and rec["attack"]["name"] == "charmer"
    assert all(0 <= m[k] <= 1 for k in ("clip_score_clean", "clip_score_adv", "clip_score_adv_own", "clip_text"))
    assert len(rec["examples"]) == 2 and (tmp_path / "r.images" / rec["examples"][1]["adv_image"]).is_file()
    assert json.loads((tmp_path / "r.json").read_text())["metrics"] == m
    again = eval_t2i(sd, f"captions:{f}", **kw)
    assert again["resumed_batches"] == 2 and again["metrics"] == m
    assert clip_score(tiny, sd.generate(CAPS[:1], [0]), CAPS[:1]).shape == (1,)


def test_generator_registry_errors():
    with pytest.raises(RobustClipError, match="unknown generator"):
        load_t2i("no-such-generator")
    with pytest.raises(RobustClipError, match="cannot load the Stable Diffusion pipeline"):
        load_t2i("sd:/no/such/folder")


def test_pez_inversion_climbs_and_metrics(tiny, tmp_path):
    start = pez_invert(tiny, CAPS[:2], steps=1)
    rows = pez_invert(tiny, CAPS[:2], steps=15)
    assert all(b["sim"] > a["sim"] for a, b in zip(start, rows))
    assert [len(r["ids_rec"]) for r in rows] == [len(tiny.tokenizer.encode(c)) for c in CAPS[:2]]
    assert word_accuracy(["a red two"], ["a red digit"]) == 2 / 3 and token_accuracy([[1, 2]], [[2, 3]]) == 0.5
    assert corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100)
    f = tmp_path / "caps.txt"
    f.write_text("\n".join(CAPS) + "\n")
    rec = eval_inversion(
        tiny, f"captions:{f}", steps=3, vocab="task", batch_size=2, output=tmp_path / "i.json", device="cpu"
    )
    assert rec["metrics"]["n"] == 3 and set(rec["metrics"]) >= {"sim", "sim_text", "word_acc", "token_acc", "bleu"}


def test_cli_downstream_errors(tmp_path, capsys):
    assert main(["eval", "t2i", "--k", "-1"]) == 2
    assert (
        main(["eval", "t2i", "--generator", "no-such-generator", "--dataset", "captions:" + str(tmp_path / "none.txt")])
        == 2
    )
    assert main(["eval", "inversion", "--model", "mini-base", "--steps", "0"]) == 2
    assert main(["eval", "inversion", "--model", "mini-base", "--dataset", "mini/digit", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(
        l.startswith(("robustclip eval t2i: error:", "robustclip eval inversion: error:")) for l in err
    )
    assert "--k must be" in err[0] and "caption file not found" in err[1] and "--steps" in err[2]
    assert "not a retrieval or caption task" in err[3]
