"load_clip / save_clip: every spec users write, round trips, and one clear error per bad input."

import json
import os
from pathlib import Path

import open_clip
import pytest
import torch

from robustclip.core import RobustClipError
from robustclip.models import PixelCLIP, create_clip, load_clip, save_clip
from robustclip import models


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def saved_tiny(tmp_path, tiny):
    return save_clip(tiny, tmp_path / "tiny", vision_only=tmp_path / "tiny_visual.pt")


def test_round_trip_bit_identical_through_load_clip_and_plain_open_clip(saved_tiny, tiny):
    back = load_clip(f"local-dir:{saved_tiny}")
    assert _same_weights(back.model, tiny.model)
    oc, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{saved_tiny}")
    assert _same_weights(oc, tiny.model)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(back.encode_image(x), tiny.eval().encode_image(x))


def test_save_load_safetensors_and_pt_full_checkpoints(tmp_path, tiny):
    from safetensors.torch import save_file

    other = create_clip(tiny.model_cfg, seed=3)
    save_file({k: v.contiguous() for k, v in other.model.state_dict().items()}, str(tmp_path / "full.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in other.model.state_dict().items()}}, tmp_path / "full.pt")
    for f in ("full.safetensors", "full.pt"):
        m = load_clip("RC-Tiny-ViT", pretrained=str(tmp_path / f))
        assert _same_weights(m.model, other.model), f


def test_vision_only_checkpoints_keep_the_base_text_tower(tmp_path, saved_tiny, tiny):
    robust = create_clip(tiny.model_cfg, seed=7)
    torch.save(robust.visual.state_dict(), tmp_path / "fare.pt")  # released FARE format
    torch.save({"vision_encoder_state_dict": robust.visual.state_dict()}, tmp_path / "tecoa.pt")  # TeCoA format
    torch.save({f"visual.{k}": v for k, v in robust.visual.state_dict().items()}, tmp_path / "prefixed.pt")
    for f in ("fare.pt", "tecoa.pt", "prefixed.pt"):
        m = load_clip(f"local-dir:{saved_tiny}", pretrained=str(tmp_path / f))
        assert _same_weights(m.visual, robust.visual), f
        assert _same_weights(m.model.transformer, tiny.model.transformer), f
        assert "(vision)" in m.pretrained


@pytest.mark.parametrize("arch,size", [("ViT-B-32", 224), ("RN50", 224)])
def test_any_open_clip_architecture(arch, size):
    m = load_clip(arch)
    assert isinstance(m, PixelCLIP) and m.image_size == size
    with torch.no_grad():
        e = m.encode_image(torch.rand(1, 3, size, size))
        t = m.encode_text(["a photo of a dog"])
    assert e.shape == t.shape == (1, m.embed_dim)


def test_openai_tags_get_quickgelu(monkeypatch):
    seen = {}
    real = open_clip.create_model

    def fake(name, pretrained=None, force_quick_gelu=False, **kw):
        seen[(name, pretrained)] = force_quick_gelu
        return real("RC-Tiny-ViT")

    monkeypatch.setattr(open_clip, "create_model", fake)
    monkeypatch.setattr(models, "check_hub_weights", lambda *a: None)  # offline: the fake needs no cached weights
    m = load_clip("ViT-L-14", pretrained="openai")
    assert seen[("ViT-L-14", "openai")] is True and m.model_cfg["quick_gelu"] is True
    load_clip("ViT-B-32", pretrained="laion2b_s34b_b79k")
    assert seen[("ViT-B-32", "laion2b_s34b_b79k")] is False
    load_clip("ViT-B-32", pretrained="openai", quick_gelu=False)  # an explicit choice wins
    assert seen[("ViT-B-32", "openai")] is False


def _fake_hub(cache: Path, repo: str, src: Path):
    d = cache / f"models--{repo.replace('/', '--')}"
    snap = d / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    snap.mkdir(parents=True)
    for f in src.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (d / "refs").mkdir()
    (d / "refs" / "main").write_text(snap.name)


def test_hf_hub_from_the_local_cache(tmp_path, monkeypatch, saved_tiny, tiny):
    _fake_hub(tmp_path / "hub", "chs20/tiny-clip", saved_tiny)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = load_clip("hf-hub:chs20/tiny-clip")
    assert _same_weights(m.model, tiny.model) and m.name == "hf-hub:chs20/tiny-clip"


ERRORS = [
    (lambda t: load_clip("ViT-L-41"), "did you mean"),
    (lambda t: load_clip("ViT-L-41"), "ViT-L-14"),
    (lambda t: load_clip("RC-Tiny-ViT", pretrained=str(t / "missing.pt")), "checkpoint file not found"),
    (lambda t: load_clip("RC-Tiny-ViT", pretrained="laion9000"), "neither a checkpoint file nor a tag"),
    (lambda t: load_clip("local-dir:" + str(t / "nope")), "is not a folder"),
    (lambda t: load_clip(""), "non-empty"),
]


@pytest.mark.parametrize("i", range(len(ERRORS)))
def test_errors_are_one_clear_line(i, tmp_path):
    fn, msg = ERRORS[i]
    with pytest.raises(RobustClipError) as e:
        fn(tmp_path)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_checkpoint_of_another_architecture_names_the_keys(tmp_path):
    torch.save(load_clip("RN50").visual.state_dict(), tmp_path / "rn50_visual.pt")
    with pytest.raises(RobustClipError, match="missing keys .*unexpected keys.*another architecture"):
        load_clip("RC-Tiny-ViT", pretrained=str(tmp_path / "rn50_visual.pt"))


def test_pickled_code_is_refused(tmp_path):
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "pickled.pt")
    with pytest.raises(RobustClipError, match="pickled code"):
        load_clip("RC-Tiny-ViT", pretrained=str(tmp_path / "pickled.pt"))


def test_hub_without_cache_or_network_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RobustClipError, match="hf download chs20/fare2-clip"):
        load_clip("hf-hub:chs20/fare2-clip")


def test_local_dir_without_config(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(RobustClipError, match="no open_clip_config.json"):
        load_clip(f"local-dir:{tmp_path / 'd'}")


@pytest.mark.parametrize(
    "bad,msg",
    [
        (torch.rand(2, 3, 32, 32) * 2, "must lie in [0,1]"),
        (torch.rand(2, 32, 32), "shape (N,3,H,W)"),
        (torch.rand(2, 3, 64, 64), "model takes 32x32"),
        (torch.full((1, 3, 32, 32), float("nan")), "must lie in [0,1]"),
    ],
)
def test_bad_images(tiny, bad, msg):
    with pytest.raises(RobustClipError) as e:
        tiny.encode_image(bad)
    assert msg in str(e.value)


_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 ,.;:'\"!?-&<>#()\t\n" + "éüß\u201c\u201d\u00a0\u2019"
_PIECES = [
    "&amp;",
    "&lt;b&gt;",
    "&#39;",
    "&quot",
    "\x1b[31m",
    "\r\n",
    "\x00",
    "\ufb01",
    "Ã©",
    " red ",
    "seven",
    "it's",
    "  ",
]


def _texts():
    from hypothesis import strategies as st

    piece = st.one_of(st.text(alphabet=_ALPHABET, max_size=12), st.sampled_from(_PIECES))
    return st.lists(st.lists(piece, max_size=8).map("".join), min_size=1, max_size=8)


def test_fast_tokenizer_gives_open_clips_ids():
    "FastTokenizer (every BPE model's tokenizer) returns open_clip's ids on any text: its shortcut and its fallback."
    from hypothesis import given, settings
    from robustclip.models import FastTokenizer, fast_tokenizer

    slow = open_clip.SimpleTokenizer(context_length=16)
    fast = fast_tokenizer(open_clip.SimpleTokenizer(context_length=16))
    assert isinstance(fast, FastTokenizer) and isinstance(load_clip("mini-base").tokenizer, FastTokenizer)

    @settings(max_examples=300, deadline=None)
    @given(_texts())
    def same(texts):
        assert torch.equal(fast(texts), slow(texts))

    same()
