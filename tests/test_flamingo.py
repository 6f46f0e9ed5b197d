"""OpenFlamingo (`open-flamingo:`) on CPU with a tiny random configuration (a 4-layer MPT from a transformers config, a
tiny open_clip ViT): equal to `open-flamingo` 2.0.1's own model (vision tokens, logits, beam search; live where its
throwaway environment exists, else against the outputs it recorded), the released checkpoint's key names, generate /
nll / the ensemble attack end to end, the vision swap and the refusals."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
import open_clip
from transformers import MptConfig, MptForCausalLM

from robustclip.core import RobustClipError
from robustclip.models import create_clip
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
    vqa_demo,
    flamingo_ids,
    flamingo_text,
    left_pad,
    lm_out,
    load_open_flamingo,
    load_released,
    released_state_dict,
    vit_patch_tokens,
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


def test_equals_open_flamingo_2_0_1(tmp_path):
    "Vision tokens, logits and 3-beam search equal those of open-flamingo 2.0.1's `Flamingo` given the same weights."
    model, cfg, inp = _case()
    feats, logits, gens = _mine(model, inp)
    real = inp["mask"].bool()
    recorded = json.loads(RECORDED.read_text())
    assert {k: v for k, v in gens.items()} == recorded["generated"]  # what the reference generated, recorded
    torch.testing.assert_close(logits[real][:, :6], torch.tensor(recorded["logits"]), atol=2e-3, rtol=1e-4)
    assert len({tuple(r) for g in gens.values() for r in g}) >= 4  # the penalties and prompts give different answers
    if not REF_PYTHON.exists():
        pytest.skip(
            f"no open-flamingo 2.0.1 environment at {REF_PYTHON} (ROBUSTCLIP_OF_PYTHON); build it:{REFERENCE_ENV}"
        )
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    torch.save(inp, tmp_path / "inputs.pt")
    torch.save(released_state_dict(model, full=True), tmp_path / "state.pt")
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
    torch.testing.assert_close(feats, ref["features"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[real], ref["logits"][real], atol=2e-3, rtol=1e-4)  # measured: ≤ 8e-4 of ±11
    live = {k: _until_eos(v, cfg["eoc"]) for k, v in ref["generated"].items()}
    assert gens == live
    assert recorded["generated"] == live  # the recorded outputs are the reference's


def record_reference(out: Path = RECORDED) -> None:
    "Record the reference's outputs for the case (by hand, where its environment exists: `python tests/test_flamingo.py`)."
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
    out.write_text(json.dumps(rec, indent=1) + "\n")


if __name__ == "__main__":
    record_reference()
