"""OpenFlamingo (`open-flamingo:`) on CPU with a tiny random configuration (a 4-layer MPT from a transformers config, a
tiny open_clip ViT): equal to `open-flamingo` 2.0.1's own model (vision tokens, logits, beam search; live where its
throwaway environment exists, else against the outputs it recorded), the released checkpoint's key names, generate /
nll / the ensemble attack end to end, the vision swap and the refusals."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
import open_clip
from transformers import MptConfig, MptForCausalLM

from robustclip.core import RobustClipError
from robustclip.models import create_clip
from robustclip.vlm.data import VLMTask
from robustclip.vlm.core import load_lvlm, lvlm_loader, register_lvlm, swap_vision, word_tokenizer
from robustclip.vlm.flamingo import (
    CAPTION_PROMPT,
    VQA_PROMPT,
    Decoding,
    FlamingoConfig,
    OpenFlamingo,
    add_flamingo_tokens,
    beam_search,
    caption_demo,
    context_demos,
    vqa_demo,
    flamingo_ids,
    flamingo_plan,
    flamingo_text,
    left_pad,
    lm_out,
    load_open_flamingo,
    load_released,
    released_state_dict,
    vit_patch_tokens,
    scored_row,
    use_context,
    with_context,
    write_tiny_flamingo,
)

HERE = Path(__file__).resolve().parent
REF_PYTHON = Path(os.environ.get("ROBUSTCLIP_OF_PYTHON", "/tmp/of-venv/bin/python"))
RECORDED = HERE / "flamingo_reference.json"
# The throwaway environment with open-flamingo 2.0.1 (never part of the repo). open-flamingo pins torch 2.0.1, so it is
# installed without dependencies beside the transformers, tokenizers, hub client and open_clip of its time; torch and
# the rest come from robustclip's .venv through a .pth file read after those pins. Built from the repo root:
REFERENCE_ENV = """
python3 -m venv /tmp/of-venv
/tmp/of-venv/bin/pip install --no-deps open-flamingo==2.0.1 einops einops-exts==0.0.4 transformers==4.34.1 \\
    tokenizers==0.14.1 huggingface-hub==0.17.3 open-clip-torch==2.19.0
echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/of-venv/lib/python3.11/site-packages/zz_robustclip.pth
"""
WORDS = "Output: Question: Short answer: a the red green blue digit seven one two on black yes no what colour is it"
CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}
PENALTIES = (-2.0, 0.0, 1.0)
MAX_NEW = 8


def _tokenizer():
    tok = word_tokenizer([WORDS])
    add_flamingo_tokens(tok)
    return tok


def _case():
    "A tiny OpenFlamingo with OpenFlamingo's default resampler and blocks, weights widened so that choices are clear."
    tok = _tokenizer()
    mpt = {"d_model": 32, "n_heads": 4, "n_layers": 4, "expansion_ratio": 2, "max_seq_len": 128, "vocab_size": len(tok)}
    torch.manual_seed(0)
    model = OpenFlamingo(MptForCausalLM(MptConfig(**mpt)), tok, open_clip.CLIP(**CLIP_CFG).visual, FlamingoConfig(2))
    with torch.no_grad():  # the gates start at 0 (the images would change nothing), the LM's outputs nearly uniform
        for name, p in model.named_parameters():
            if name.endswith("_gate"):
                p.uniform_(0.5, 1.5)
            elif not name.startswith("vision.") and p.ndim > 1:
                p.normal_(0, 0.5)
        w = model.embeddings.weight  # <|endofchunk|> near a frequent token: answers end after 0, 1, 2 or 8 tokens
        w[model.eoc_id] = w[26] + 0.05 * torch.randn(w.shape[1], generator=torch.Generator().manual_seed(3))
    vision = torch.cat([torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(s)) for s in (1, 2)])[:5]
    prompts = [
        model.template.text(CAPTION_PROMPT),
        with_context(CAPTION_PROMPT, [caption_demo("a red digit seven"), caption_demo("a blue one")]),
        model.template.text(VQA_PROMPT.format(question="what colour is it")),
        with_context(VQA_PROMPT.format(question="is it red"), [vqa_demo("what colour is it", "blue")]),
        with_context(CAPTION_PROMPT, [caption_demo("two on black")]),
    ]
    rows = [flamingo_ids(model, flamingo_text(model, p)) for p in prompts]
    scored = [r + flamingo_ids(model, "a red digit seven on black") for r in rows]
    cfg = {
        "clip": CLIP_CFG,
        "mpt": mpt,
        "every": 2,
        "eoc": model.eoc_id,
        "media": model.media_id,
        "pad": tok.pad_token_id,
        "length_penalties": list(PENALTIES),
        "max_new_tokens": MAX_NEW,
    }
    ids = left_pad(scored, tok.pad_token_id, "cpu")
    mask = left_pad([[1] * len(r) for r in scored], 0, "cpu")
    return model, cfg, {"vision": vision, "ids": ids, "mask": mask, "prompts": rows}


def _mine(model, inp):
    "This backend's vision tokens, logits and beam-search outputs for the case."
    with torch.no_grad():
        feats = vit_patch_tokens(model.vision, inp["vision"])
        media = model.perceiver(feats)
        ids, mask = inp["ids"], inp["mask"]
        logits = lm_out(model, ids, mask, media[:, None], (ids == model.media_id).cumsum(1)).logits
    gens = {str(lp): beam_search(model, media, inp["prompts"], Decoding(MAX_NEW, lp)) for lp in PENALTIES}
    return feats, logits, gens


def _until_eos(rows, eos):
    "transformers appends EOS (and pads) after a hypothesis shorter than the longest: the tokens before the first EOS."
    return [r[: r.index(eos)] if eos in r else r for r in rows]


def test_equals_recorded_reference():
    "Vision tokens aside, logits and 3-beam search equal what open-flamingo 2.0.1 gave for the same weights (recorded)."
    model, cfg, inp = _case()
    feats, logits, gens = _mine(model, inp)
    recorded = json.loads(RECORDED.read_text())
    assert gens == recorded["generated"]
    torch.testing.assert_close(
        logits[inp["mask"].bool()][:, :6], torch.tensor(recorded["logits"]), atol=2e-3, rtol=1e-4
    )
    assert len({tuple(r) for g in gens.values() for r in g}) >= 4  # the penalties and prompts give different answers
    assert {len(r) for g in gens.values() for r in g} >= {0, 1, MAX_NEW}  # EOS at once, after one token, never


@pytest.mark.skipif(not REF_PYTHON.exists(), reason=f"no open-flamingo 2.0.1 environment; build it:{REFERENCE_ENV}")
def test_equals_open_flamingo_2_0_1(tmp_path):
    "Vision tokens, logits and 3-beam search equal those of open-flamingo 2.0.1's `Flamingo`, run live on our weights."
    model, cfg, inp = _case()
    feats, logits, gens = _mine(model, inp)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    torch.save(inp, tmp_path / "inputs.pt")
    torch.save(released_state_dict(model, full=True), tmp_path / "state.pt")  # loaded there with strict=True
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")} | {"CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(
        [str(REF_PYTHON), "-W", "ignore", str(HERE / "flamingo_reference.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    ref = torch.load(tmp_path / "ref.pt")
    real = inp["mask"].bool()
    torch.testing.assert_close(feats, ref["features"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[real], ref["logits"][real], atol=2e-3, rtol=1e-4)  # measured: ≤ 8e-4 of ±11
    live = {k: _until_eos(v, cfg["eoc"]) for k, v in ref["generated"].items()}
    assert gens == live
    assert json.loads(RECORDED.read_text())["generated"] == live  # the recorded outputs are the reference's


# --- the released checkpoint's key names ----------------------------------------------------------------------------


def _released_keys(depth: int, xattn_layers: tuple, layers: str = "transformer.blocks") -> set[str]:
    "The keys of a released checkpoint.pt, written out from open_flamingo's module names (helpers.py, flamingo_lm.py)."
    keys = {"perceiver.latents", "perceiver.norm.weight", "perceiver.norm.bias", f"lang_encoder.{layers}.wte.weight"}
    keys = {k.replace("transformer.blocks.wte", "transformer.wte") for k in keys}
    for i in range(depth):
        attn = ["norm_media.weight", "norm_media.bias", "norm_latents.weight", "norm_latents.bias"]
        attn += ["to_q.weight", "to_kv.weight", "to_out.weight"]
        keys |= {f"perceiver.layers.{i}.0.{n}" for n in attn}
        keys |= {f"perceiver.layers.{i}.1.{n}" for n in ("0.weight", "0.bias", "1.weight", "3.weight")}
    block = ["attn_gate", "ff_gate", "attn.norm.weight", "attn.norm.bias", "attn.to_q.weight", "attn.to_kv.weight"]
    block += ["attn.to_out.weight", "ff.0.weight", "ff.0.bias", "ff.1.weight", "ff.3.weight"]
    for i in xattn_layers:
        keys |= {f"lang_encoder.{layers}.{i}.gated_cross_attn_layer.{n}" for n in block}
    return keys


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    "A tiny `open-flamingo:` folder: 4-layer MPT, gated blocks before layers 1 and 3, a 2-block resampler."
    return write_tiny_flamingo(tmp_path_factory.mktemp("of") / "tiny-flamingo")


@pytest.fixture(autouse=True)
def _this_backend():
    "llava.py still registers a placeholder `open-flamingo:` loader when imported: make this backend the one found."
    import robustclip.vlm.llava  # noqa: F401  (the placeholder registers on import)

    register_lvlm("open-flamingo:", load_open_flamingo)


@pytest.fixture()
def of(tiny_dir):
    return load_lvlm(f"open-flamingo:{tiny_dir}")


def test_checkpoint_has_the_released_key_names(tiny_dir):
    sd = torch.load(tiny_dir / "checkpoint.pt")
    assert set(sd) == _released_keys(2, (1, 3))


def test_released_keys_land_on_their_modules(tiny_dir, of):
    "A checkpoint written with the released names loads each tensor into the module that plays its part."
    sd = {k: torch.randn_like(v) for k, v in torch.load(tiny_dir / "checkpoint.pt").items()}
    assert load_released(of, sd) == {"perceiver": 3 + 2 * 11, "xattn": 2 * 11, "lm": 1}
    pairs = {
        "perceiver.latents": of.perceiver.latents,
        "perceiver.layers.1.0.norm_latents.bias": of.perceiver.blocks[1].attn.norm_latents.bias,
        "perceiver.layers.1.0.to_kv.weight": of.perceiver.blocks[1].attn.kv.weight,
        "perceiver.layers.0.1.0.weight": of.perceiver.blocks[0].ff.norm.weight,
        "perceiver.layers.0.1.3.weight": of.perceiver.blocks[0].ff.down.weight,
        "lang_encoder.transformer.blocks.3.gated_cross_attn_layer.attn.to_out.weight": of.layers[
            3
        ].xattn.attn.out.weight,
        "lang_encoder.transformer.blocks.1.gated_cross_attn_layer.ff.1.weight": of.layers[1].xattn.ff.up.weight,
        "lang_encoder.transformer.blocks.1.gated_cross_attn_layer.attn_gate": of.layers[1].xattn.attn_gate,
        "lang_encoder.transformer.wte.weight": of.lm.transformer.wte.weight,
    }
    for k, p in pairs.items():
        assert torch.equal(sd[k], p), k
    assert torch.equal(of.lm.lm_head.weight, sd["lang_encoder.transformer.wte.weight"])  # MPT's head stays tied
    assert of.layers[0].xattn is None and of.layers[2].xattn is None
    train = {"model_state_dict": {"module." + k: v + 1 for k, v in sd.items()}, "epoch": 3}  # a training checkpoint
    load_released(of, train)
    assert torch.equal(of.perceiver.latents, sd["perceiver.latents"] + 1)


def test_mismatching_checkpoints_are_refused_by_name(tiny_dir, of, tmp_path):
    sd = torch.load(tiny_dir / "checkpoint.pt")
    extra = sd | {"perceiver.media_time_embs": torch.zeros(4, 1, 32)}
    with pytest.raises(RobustClipError, match=r"1 unknown keys \(perceiver.media_time_embs\)"):
        load_released(of, extra)
    lost = {k: v for k, v in sd.items() if "blocks.3.gated" not in k}
    with pytest.raises(RobustClipError, match="11 missing keys .*blocks.3.gated_cross_attn_layer"):
        load_released(of, lost)
    wide = sd | {"perceiver.latents": torch.zeros(9, 32)}
    with pytest.raises(RobustClipError, match=r"perceiver.latents \(9, 32\) ≠ \(8, 32\)"):
        load_released(of, wide)
    every1 = sd | {k.replace("blocks.1.", "blocks.0."): v for k, v in sd.items() if "blocks.1.gated" in k}
    with pytest.raises(RobustClipError, match="a gated block every 2 layers.*blocks.0.gated_cross_attn_layer"):
        load_released(of, every1)
    (tmp_path / "x.pt").write_text("not a checkpoint")
    with pytest.raises(RobustClipError, match="is not a checkpoint"):
        load_released(of, tmp_path / "x.pt")


def test_specs_that_cannot_load_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(RobustClipError, match="needs a release or a folder"):
        load_lvlm("open-flamingo:")
    with pytest.raises(RobustClipError, match="neither a release"):
        load_lvlm("open-flamingo:no/such-model")
    with pytest.raises(RobustClipError, match="remote code that transformers does not ship"):
        load_lvlm("open-flamingo:openflamingo/OpenFlamingo-3B-vitl-mpt1b")
    with pytest.raises(RobustClipError, match="cannot find checkpoint.pt of openflamingo/OpenFlamingo-9B-vitl-mpt7b"):
        load_lvlm("open-flamingo:openflamingo/OpenFlamingo-9B-vitl-mpt7b")
    assert lvlm_loader("open-flamingo:openflamingo/OpenFlamingo-9B-vitl-mpt7b") is load_open_flamingo


def test_a_snapshot_of_a_release_gets_its_settings(tmp_path):
    "A folder named like a release, with its checkpoint.pt (RobustVLM's --checkpoint_path), gets the release's plan."
    snap = tmp_path / "OpenFlamingo-9B-vitl-mpt7b"
    snap.mkdir()
    torch.save({}, snap / "checkpoint.pt")
    plan = flamingo_plan(str(snap))
    assert plan["lm"] == "anas-awadalla/mpt-7b" and plan["cross_attn_every_n_layers"] == 4
    assert (plan["vision"], plan["vision_pretrained"], plan["checkpoint"]) == (
        "ViT-L-14",
        "openai",
        str(snap / "checkpoint.pt"),
    )


def test_declared_as_a_plugin():
    "`load_lvlm` finds this backend through the robustclip.plugins entry point (pyproject.toml, installed by pip -e)."
    from importlib.metadata import entry_points

    plugins = {e.name: e.value for e in entry_points(group="robustclip.plugins")}
    assert plugins["open-flamingo"] == "robustclip.vlm.flamingo"


# --- generate, nll, the attacks ---------------------------------------------------------------------------------------


def _images(n, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_generate_and_nll_per_sample(of):
    "Batches give what each sample gives alone (mixed tasks, context, lengths); the decoding follows the prompt's kind."
    x = _images(3)
    ctx = with_context(CAPTION_PROMPT, [caption_demo("a red digit seven"), caption_demo("two on black")])
    prompts = [CAPTION_PROMPT, VQA_PROMPT.format(question="what colour is it"), ctx]
    together = of.generate(x, prompts)
    assert together == [of.generate(x[i : i + 1], [p])[0] for i, p in enumerate(prompts)]
    targets = ["a red digit seven", "blue", "two on black"]
    nll = of.nll(x, prompts, targets)
    single = torch.cat([of.nll(x[i : i + 1], [p], [t]) for i, (p, t) in enumerate(zip(prompts, targets))])
    torch.testing.assert_close(nll, single, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(of.nll(x, prompts, targets, reduction="sum"), nll * torch.tensor([4.0, 1.0, 3.0]))
    assert not torch.allclose(of.nll(x[:1], CAPTION_PROMPT, ["blue"]), of.nll(x[1:2], CAPTION_PROMPT, ["blue"]))
    media = of.encode_images(x[:1])
    row = [flamingo_ids(of, flamingo_text(of, CAPTION_PROMPT))]
    assert len(beam_search(of, media, row, Decoding(20, -2.0))[0]) <= 20
    assert len(beam_search(of, media, row, Decoding(3, 1.0, min_new_tokens=3))[0]) == 3  # EOS forbidden before 3


def _robustvlm_labels(of, text: str) -> list[int]:
    "RobustVLM's `get_label(mode='colon')` on the tokens of a full answer text: the tokens after the last colon."
    ids = flamingo_ids(of, text)
    colon = of.tokenizer.encode(":")[0]
    end = max(i for i, t in enumerate(ids) if t == colon) + 1
    skip = {of.tokenizer.pad_token_id, of.media_id, of.eoc_id}
    return [-100 if i < end or i == 0 or t in skip else t for i, t in enumerate(ids)]


def test_scored_tokens_are_robustvlms(of):
    "The answer tokens `nll` scores are those RobustVLM's OpenFlamingo loss scores (colons removed from the answer)."
    train = VLMTask("t", "caption", [None] * 4, [None] * 4, [["a red seven"], ["two: on black"], ["yes"], ["no"]])
    use_context(of, train)
    for prompt, answer in [(CAPTION_PROMPT, "a red digit: seven"), (VQA_PROMPT.format(question="is it red"), "yes")]:
        ids, labels = scored_row(of, prompt, answer)
        full = flamingo_text(of, prompt) + answer.replace(":", "") + "<|endofchunk|>"
        assert labels == _robustvlm_labels(of, full)[: len(labels)] and flamingo_ids(of, full)[:-1] == ids
    assert flamingo_text(of, CAPTION_PROMPT).count("Output:") == 3  # two demonstrations, then the query
    use_context(of, None)


def test_nll_gradients_reach_the_pixels(of):
    x = _images(2).requires_grad_(True)
    of.nll(x, CAPTION_PROMPT, ["a red digit seven", "blue"]).sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad.abs().sum((1, 2, 3)) > 0).all()
    with pytest.raises(RobustClipError, match="one image per prompt"):
        of.nll(x, "<image>Output:a<|endofchunk|><image>Output:", ["a", "b"])
    with pytest.raises(RobustClipError, match="empty answer"):
        of.nll(x, CAPTION_PROMPT, ["", "a"])


def test_swap_vision_changes_only_the_encoder(of):
    narrow = {"image_size": 16, "patch_size": 8, "width": 16, "layers": 1, "head_width": 8}
    text = {"layers": 1, "width": 16, "heads": 2}
    with pytest.raises(RobustClipError, match="'native'"):
        swap_vision(
            of, create_clip({"embed_dim": 16, "vision_cfg": narrow, "text_cfg": text}), resolution="interpolate"
        )
    with pytest.raises(RobustClipError, match="32-wide patch tokens"):
        swap_vision(of, create_clip({"embed_dim": 16, "vision_cfg": narrow, "text_cfg": text}, seed=1))
    before = {k: v.clone() for k, v in of.state_dict().items() if not k.startswith("vision.")}
    robust = create_clip(
        {"embed_dim": 16, "vision_cfg": narrow | {"width": 32}, "text_cfg": text}, name="tiny-fare", seed=1
    )
    swap_vision(of, robust)
    assert of.image_size == 16 and of.spec["model"] == "tiny-fare"
    assert all(torch.equal(v, of.state_dict()[k]) for k, v in before.items())
    assert torch.equal(of.vision.conv1.weight, robust.visual.conv1.weight) and of.vision is not robust.visual
    assert len(of.generate(_images(2, 16), CAPTION_PROMPT, max_new_tokens=3)) == 2


def test_gpt_neox_language_model():
    "OpenFlamingo-4B's language model family (RedPajama-INCITE is a GPT-NeoX): rotary positions under left padding."
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    tok = _tokenizer()
    torch.manual_seed(0)
    cfg = GPTNeoXConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=len(tok)
    )
    of = OpenFlamingo(GPTNeoXForCausalLM(cfg), tok, open_clip.CLIP(**CLIP_CFG).visual, FlamingoConfig(1, num_latents=4))
    with torch.no_grad():
        for name, p in of.named_parameters():
            if name.endswith("_gate"):
                p.fill_(1.0)
    assert of.layers_path == "gpt_neox.layers" and all(layer.xattn is not None for layer in of.layers)
    x = _images(2)
    prompts = [CAPTION_PROMPT, with_context(CAPTION_PROMPT, [caption_demo("a red digit seven on black")])]
    nll = of.nll(x, prompts, ["blue", "blue"])
    single = torch.cat([of.nll(x[i : i + 1], [p], ["blue"]) for i, p in enumerate(prompts)])
    torch.testing.assert_close(nll, single, atol=1e-5, rtol=1e-5)
    assert of.generate(x, prompts, max_new_tokens=4) == [
        of.generate(x[i : i + 1], [p], 4)[0] for i, p in enumerate(prompts)
    ]


def test_context_demos_are_text_only_and_seeded():
    train = VLMTask("t", "vqa", [None] * 50, [f"q{i}?" for i in range(50)], [[f"a:{i}"] for i in range(50)])
    d = context_demos(train, 7)
    assert d == context_demos(train, 7) and d != context_demos(train, 8) and len(d) == 2
    assert all(
        x.startswith("Question:q") and x.endswith("<|endofchunk|>") and ":" not in x.split("answer:")[1] for x in d
    )
    assert with_context(VQA_PROMPT.format(question="q?"), d).count("<image>") == 1


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from robustclip.vlm.data import write_vlm_fixtures

    return write_vlm_fixtures(tmp_path_factory.mktemp("vlmdata"), n=2)


def test_ensemble_end_to_end(tiny_dir, data_root):
    "The tiny OpenFlamingo through `eval_vlm`: RobustVLM's ensemble on captions and on VQA with its targeted stages."
    from robustclip.eval.vlm import eval_vlm

    spec = f"open-flamingo:{tiny_dir}"
    kw = dict(data_root=str(data_root), attack="ensemble", eps="8/255", steps=2, batch_size=2, device="cpu")
    c = eval_vlm(spec, "vlm/coco", max_new_tokens=4, **kw)
    assert c["attack"]["name"] == "ensemble" and c["vlm"] == spec and c["metrics"]["n"] >= 1
    assert c["metrics"]["robust_cider"] <= c["metrics"]["cider"] + 1e-9
    q = eval_vlm(spec, "vlm/vqav2", **kw)
    assert (
        q["attack"]["targets"] == ["maybe", "Word"] and q["metrics"]["robust_vqa_acc"] <= q["metrics"]["vqa_acc"] + 1e-9
    )


def test_eval_vlm_gives_the_context_of_the_training_split(tiny_dir, data_root):
    "`eval_vlm` on an OpenFlamingo puts text-only demonstrations from the task's training split before each prompt."
    from robustclip.eval.vlm import eval_vlm

    lvlm = load_lvlm(f"open-flamingo:{tiny_dir}", device="cpu")
    eval_vlm(lvlm, "vlm/coco", data_root=str(data_root), batch_size=2, max_new_tokens=2, device="cpu")
    assert "a training caption" in lvlm.context["caption"] and "<image>" not in lvlm.context["caption"]
    eval_vlm(lvlm, "vlm/textvqa", data_root=str(data_root), batch_size=2, max_new_tokens=2, device="cpu")
    assert "what is written on sign" in lvlm.context["vqa"]
    with pytest.raises(RobustClipError, match="training split"):
        eval_vlm(lvlm, "vlm/pope/random", data_root=str(data_root), batch_size=2, device="cpu")


def record_reference(out: Path = RECORDED) -> None:
    "Record the reference's outputs for the case (by hand where its environment is: `python tests/test_flamingo.py`)."
    import tempfile

    model, cfg, inp = _case()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "config.json").write_text(json.dumps(cfg))
        torch.save(inp, d / "inputs.pt")
        torch.save(released_state_dict(model, full=True), d / "state.pt")
        subprocess.run([str(REF_PYTHON), "-W", "ignore", str(HERE / "flamingo_reference.py"), str(d)], check=True)
        ref = torch.load(d / "ref.pt")
    rec = {
        "note": "open-flamingo 2.0.1 + transformers 4.34.1 + open_clip 2.19.0 on the case of tests/test_flamingo.py",
        "generated": {k: _until_eos(v, cfg["eoc"]) for k, v in ref["generated"].items()},
        "logits": ref["logits"][inp["mask"].bool()][:, :6].tolist(),
    }
    out.write_text(_record_text(rec))


def _record_text(rec: dict) -> str:
    "The record as JSON with one logits row a line."
    rows = ",\n".join("  " + json.dumps(r) for r in rec["logits"])
    head = f' "note": {json.dumps(rec["note"])},\n "generated": {json.dumps(rec["generated"])},\n'
    return "{\n" + head + ' "logits": [\n' + rows + "\n ]\n}\n"


if __name__ == "__main__":
    record_reference()
