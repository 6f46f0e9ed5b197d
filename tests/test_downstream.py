"LEAF's downstream evaluations: text-to-image under adversarial prompts (tiny random SD pipeline, CPU), PEZ inversion."

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


# LEAF's downstream protocols as its code ran them (issue 27).


def test_t2i_prompts_are_val2017_first_captions(tmp_path):
    "eval_text_to_image.py: captions_val2017.json via CocoDetection (sorted ids), the first caption of each image."
    from robustclip.data.core import get_dataset

    (tmp_path / "coco/annotations").mkdir(parents=True)
    anns = [(25, "Giraffes eat."), (9, "Food on a plate "), (25, "Two giraffes"), (9, "A meal")]
    doc = {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in (25, 9)],
        "annotations": [{"image_id": i, "id": k, "caption": c} for k, (i, c) in enumerate(anns)],
    }
    (tmp_path / "coco/annotations/captions_val2017.json").write_text(json.dumps(doc))
    t = get_dataset("t2i/coco", root=tmp_path)
    assert t.captions == [["Food on a plate "], ["Giraffes eat."]] and t.images.paths[1].name == "000000000025.jpg"


def _checker(flag: bool):
    "A tiny diffusers safety checker that flags every image (or none) and the feature extractor it reads through."
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    cfg = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2},
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 16,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    sc = StableDiffusionSafetyChecker(cfg).eval()
    with torch.no_grad():  # a concept score is cos - threshold: far below every cosine flags, far above none
        sc.concept_embeds_weights.fill_(-10.0 if flag else 10.0)
        sc.special_care_embeds_weights.fill_(10.0)
    return sc, CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


@pytest.mark.parametrize("flag", [True, False])
def test_safety_checker_verdicts_recorded_and_flagged_images_dropped(tiny, tmp_path, flag):
    "compute_clipscores.py: black (safety-blanked) generations are not scored; the checker's verdicts are kept."
    pipe = tiny_sd_pipeline(tiny, tmp_path / "tok")
    pipe.safety_checker, pipe.feature_extractor = _checker(flag)
    sd = SDText2Image(pipe, name="sd:tiny+checker", steps=2, guidance=2.0)
    (tmp_path / "caps.txt").write_text("\n".join(CAPS) + "\n")
    out = tmp_path / "r.json"
    rec = eval_t2i(
        sd,
        f"captions:{tmp_path / 'caps.txt'}",
        text_encoder=tiny,
        judge=tiny,
        k=1,
        n_positions=2,
        alphabet="xy",
        n_samples=3,
        batch_size=3,
        device="cpu",
        output=out,
    )
    m = rec["metrics"]
    rows = [r for l in (tmp_path / "r.samples.jsonl").read_text().splitlines()[1:] for r in json.loads(l)["rows"]]
    assert [r["nsfw_clean"] for r in rows] == [flag] * 3 and [r["dropped_adv"] for r in rows] == [flag] * 3
    assert (m["n_nsfw_clean"], m["n_dropped_clean"], m["n_dropped_adv"]) == ((3, 3, 3) if flag else (0, 0, 0))
    if flag:  # nothing left to score on the image side; the text-side score keeps every sample
        assert m["clip_score_clean"] != m["clip_score_clean"] and 0 <= m["clip_text"] <= 1
    else:
        assert 0 <= m["clip_score_clean"] <= 1


def test_real_image_is_centre_cropped_by_the_judge(tiny):
    "CLIPProcessor (torchmetrics' CLIPScore): shorter side resized, centre crop; a wide photo is not squashed."
    from robustclip.downstream.t2i import image_score, judge_pixels

    s = tiny.image_size
    wide = torch.rand(3, s, 3 * s, generator=torch.Generator().manual_seed(0))
    gen = torch.rand(1, 3, s, s, generator=torch.Generator().manual_seed(1))
    assert torch.equal(judge_pixels(tiny, [wide])[0], wide[:, :, s : 2 * s])
    assert image_score(tiny, gen, [wide]).item() == pytest.approx(
        image_score(tiny, gen, wide[None, :, :, s : 2 * s]).item()
    )


def test_pez_captions_shipped_with_their_hash():
    "LEAF's src/pez/coco_captions.txt byte for byte: 100 captions (99 line ends), the SHA-256 sources.json records."
    import hashlib
    from importlib.resources import files

    from robustclip.downstream.inversion import PEZ_CAPTIONS, pez_captions

    src = files("robustclip.data").joinpath("subsets")
    meta = json.loads(src.joinpath("sources.json").read_text())[PEZ_CAPTIONS]
    raw = src.joinpath(f"{PEZ_CAPTIONS}.txt").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == meta["sha256"] and raw.count(b"\n") == 99
    assert meta["commit"] == "515526ad5c8cc8affa542e533bc9b41d0e746cc3"
    t = pez_captions()
    assert (
        len(t) == 100 and t.captions[-1] == "A pretty young girl standing next to another pretty young girl on a beach."
    )


def test_bleu_is_sacrebleus_default_and_leafs_call():
    "compute_metrics.py: sacrebleu BLEU (default exp smoothing), called with the references as 100 one-line streams."
    from sacrebleu.metrics import BLEU

    from robustclip.downstream.inversion import leaf_bleu

    refs = ["a man rides a horse on the beach", "two dogs play in the snow", "a plate of food on a table"]
    recs = ["a man horse beach rides", "dogs snow two play", "food plate table"]
    # no 4-gram in common: an unsmoothed BLEU is 0 (the old mini column); sacrebleu's default smooths it
    assert BLEU(smooth_method="none").corpus_score(recs, [refs]).score == 0.0
    assert (
        corpus_bleu(recs, refs) == pytest.approx(BLEU().corpus_score(recs, [refs]).score)
        and corpus_bleu(recs, refs) > 0
    )
    want = BLEU(references=[[r] for r in refs]).corpus_score(recs, references=None).score
    assert leaf_bleu(recs, refs) == pytest.approx(want)
    assert want == pytest.approx(BLEU().corpus_score(recs[:1], [[r] for r in refs]).score)  # the first one only
