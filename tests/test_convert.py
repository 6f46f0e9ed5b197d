"""open_clip <-> transformers CLIP: equal embeddings on random towers of several shapes (both ways, round trips, towers
alone), position-grid interpolation, transformers CLIP folders, and one clear error per unsupported feature."""

import copy
import json

import pytest
import torch

pytest.importorskip("transformers")
import transformers

from robustclip import models
from robustclip.convert import (
    EOT_ID,
    hf_text_to_openclip,
    hf_to_openclip,
    hf_vision_to_openclip,
    interpolate_pos_embed,
    is_hf_clip_folder,
    load_hf_clip,
    openclip_config,
    openclip_text_to_hf,
    openclip_to_hf,
    openclip_vision_to_hf,
    resize_pos_grid,
    save_hf_clip,
    save_hf_tokenizer,
)
from robustclip.core import RobustClipError
from robustclip.models import create_clip

TOL = 1e-4  # max abs difference allowed between embeddings (fp32, eval mode)


def _cfg(
    width,
    layers,
    heads,
    patch,
    image,
    quick_gelu,
    *,
    text=(None, None, None),
    embed=32,
    ctx=16,
    mlp_ratio=4.0,
    eps=None,
):
    "An open_clip ViT config; `text` = (width, heads, layers) of the text tower (default: the vision tower's)."
    tw, th, tl = (t or v for t, v in zip(text, (width, heads, layers)))
    norm = {"norm_kwargs": {"eps": eps}} if eps else {}
    return {
        "embed_dim": embed,
        "quick_gelu": quick_gelu,
        "vision_cfg": {
            "image_size": image,
            "patch_size": patch,
            "width": width,
            "layers": layers,
            "head_width": width // heads,
            "mlp_ratio": mlp_ratio,
            **norm,
        },
        "text_cfg": {
            "context_length": ctx,
            "vocab_size": 49408,
            "width": tw,
            "heads": th,
            "layers": tl,
            "mlp_ratio": mlp_ratio,
            **norm,
        },
    }


SHAPES = {
    "w64-l2-h2-p8-i32-quickgelu": _cfg(64, 2, 2, 8, 32, True),
    "w96-l3-h4-p16-i64-gelu-eps1e-6": _cfg(96, 3, 4, 16, 64, False, embed=48, ctx=24, mlp_ratio=2.0, eps=1e-6),
    "vision-w96-l2-h4-p16-i32-text-w64-l3-h2-quickgelu": _cfg(96, 2, 4, 16, 32, True, text=(64, 2, 3)),
}
TEXTS = [
    "a red seven on grass",
    "",
    "a very small blue digit three placed in the top left corner of a noisy image, drawn with a thick pen",
]


@pytest.fixture(scope="module", params=list(SHAPES))
def model(request):
    return create_clip(SHAPES[request.param], seed=list(SHAPES).index(request.param)).eval()


def _inputs(m, seed=0, size=None):
    s = size or m.image_size
    return torch.rand(3, 3, s, s, generator=torch.Generator().manual_seed(seed)), m.tokenize(TEXTS)


def _diff(a, b) -> float:
    return (a - b).abs().max().item()


def _same_state(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sorted(sa) == sorted(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@torch.no_grad()
def _hf_embeds(hf, m, px, tok):
    return (
        hf.get_image_features(pixel_values=m.normalize(px)).pooler_output,
        hf.get_text_features(input_ids=tok).pooler_output,
    )


@torch.no_grad()
def test_openclip_to_hf_and_round_trip(model):
    px, tok = _inputs(model)
    ref = model.encode_image(px), model.encode_text(tok)
    hf = openclip_to_hf(model)
    assert hf.config.text_config.eos_token_id == EOT_ID == 49407
    assert hf.config.vision_config.hidden_act == ("quick_gelu" if model.model_cfg["quick_gelu"] else "gelu")
    assert max(_diff(a, b) for a, b in zip(_hf_embeds(hf, model, px, tok), ref)) < TOL
    out = hf(input_ids=tok, pixel_values=model.normalize(px))
    assert _diff(out.logits_per_image, model.model.get_logits(model.normalize(px), tok)[0]) < 1e-3
    back = hf_to_openclip(hf)  # HF -> open_clip: the same weights, bit for bit
    assert _same_state(back.model, model.model)
    assert _diff(back.encode_image(px), ref[0]) < TOL and _diff(back.encode_text(tok), ref[1]) < TOL
    hf2 = openclip_to_hf(back)  # ... -> HF again
    assert _same_state(hf2, hf)
    assert max(_diff(a, b) for a, b in zip(_hf_embeds(hf2, model, px, tok), ref)) < TOL


@torch.no_grad()
def test_tower_helpers_both_ways(model):
    px, tok = _inputs(model)
    img, txt, x = model.encode_image(px), model.encode_text(tok), model.normalize(px)
    hv, ht = openclip_vision_to_hf(model), openclip_text_to_hf(model)
    assert (
        type(hv) is transformers.CLIPVisionModelWithProjection and type(ht) is transformers.CLIPTextModelWithProjection
    )
    assert _diff(hv(pixel_values=x).image_embeds, img) < TOL and _diff(ht(input_ids=tok).text_embeds, txt) < TOL
    ov, ot = hf_vision_to_openclip(hv), hf_text_to_openclip(ht)
    assert _diff(ov(x), img) < TOL and _diff(ot(tok), txt) < TOL
    assert _same_state(openclip_vision_to_hf(ov), hv) and _same_state(openclip_text_to_hf(ot), ht)
    bare_v, bare_t = openclip_vision_to_hf(model, projection=False), openclip_text_to_hf(model, projection=False)
    assert type(bare_v) is transformers.CLIPVisionModel and type(bare_t) is transformers.CLIPTextModel
    assert _diff(bare_v(pixel_values=x).pooler_output @ model.visual.proj, img) < TOL  # LLaVA's class
    assert _diff(bare_t(input_ids=tok).pooler_output @ model.model.text_projection, txt) < TOL  # SD's class
    ov0, ot0 = hf_vision_to_openclip(bare_v), hf_text_to_openclip(bare_t)
    assert ov0.proj is None and ot0.text_projection is None
    assert _diff(ov0(x), bare_v(pixel_values=x).pooler_output) < TOL
    hf = openclip_to_hf(model)  # towers taken out of a whole CLIPModel
    assert _diff(hf_vision_to_openclip(hf)(x), img) < TOL and _diff(hf_text_to_openclip(hf)(tok), txt) < TOL


@torch.no_grad()
def test_custom_text_clip_converts_too():
    m = create_clip(
        {**SHAPES["w64-l2-h2-p8-i32-quickgelu"], "custom_text": True}, seed=3
    ).eval()  # text tower in m.model.text
    assert type(m.model).__name__ == "CustomTextCLIP"
    px, tok = _inputs(m)
    hf = openclip_to_hf(m)
    assert max(_diff(a, b) for a, b in zip(_hf_embeds(hf, m, px, tok), (m.encode_image(px), m.encode_text(tok)))) < TOL
    assert _diff(openclip_text_to_hf(m)(input_ids=tok).text_embeds, m.encode_text(tok)) < TOL


def test_text_pooling_agrees_for_open_clip_tokens():
    m = create_clip(SHAPES["w64-l2-h2-p8-i32-quickgelu"], seed=0).eval()
    tok = m.tokenize(TEXTS)
    assert tok[2, -1] == EOT_ID  # truncated text still ends with the EOT
    assert torch.equal(tok.argmax(-1), (tok == EOT_ID).int().argmax(-1))
    ht = openclip_text_to_hf(m)
    with torch.no_grad():
        first_eot = ht(input_ids=tok).text_embeds
        ht.text_model.eos_token_id = 2  # transformers' legacy value: argmax pooling
        assert _diff(ht(input_ids=tok).text_embeds, first_eot) == 0
        assert _diff(first_eot, m.encode_text(tok)) < TOL


@torch.no_grad()
def test_other_eos_id_becomes_open_clip_eos_pooling():
    hf = openclip_to_hf(create_clip(SHAPES["w64-l2-h2-p8-i32-quickgelu"], seed=1))
    hf.config.text_config.eos_token_id = hf.text_model.config.eos_token_id = hf.text_model.eos_token_id = 5
    oc = hf_to_openclip(hf)
    assert (oc.model_cfg["text_cfg"]["pool_type"], oc.model_cfg["text_cfg"]["eos_id"]) == ("eos", 5)
    tok = torch.randint(10, 40000, (4, 16), generator=torch.Generator().manual_seed(0))
    tok[torch.arange(4), torch.tensor([3, 7, 15, 9])] = 5
    tok[0, 12] = 5  # pooled at the first 5
    assert _diff(oc.encode_text(tok), hf.get_text_features(input_ids=tok).pooler_output) < TOL


@torch.no_grad()
def test_interpolation_runs_larger_agrees_across_libraries_and_is_identity_at_same_size(model):
    s, p = model.image_size, model.model_cfg["vision_cfg"]["patch_size"]
    new = s + 2 * p
    big = interpolate_pos_embed(copy.deepcopy(model), new)
    px, _ = _inputs(big, seed=1)
    e = big.encode_image(px)
    assert e.shape == (3, model.embed_dim) and torch.isfinite(e).all()
    assert big.image_size == new and big.visual.positional_embedding.shape[0] == (new // p) ** 2 + 1
    x = big.normalize(px)
    hv = openclip_vision_to_hf(model)
    assert (
        _diff(hv(pixel_values=x, interpolate_pos_encoding=True).image_embeds, e) < TOL
    )  # transformers' run-time resize
    assert _diff(interpolate_pos_embed(openclip_vision_to_hf(model), new)(pixel_values=x).image_embeds, e) < TOL
    hf = interpolate_pos_embed(openclip_to_hf(model), new)  # a whole CLIPModel, then back
    assert hf.config.vision_config.image_size == new
    assert _diff(hf_to_openclip(hf).encode_image(px), e) < TOL
    assert _diff(openclip_to_hf(big).get_image_features(pixel_values=x).pooler_output, e) < TOL
    same = interpolate_pos_embed(copy.deepcopy(model), s)
    assert _same_state(same.model, model.model)
    grid = model.visual.positional_embedding
    assert _diff(resize_pos_grid(grid.detach(), s // p), grid) < 1e-6


@torch.no_grad()
def test_save_and_load_a_transformers_clip_folder(model, tmp_path):
    px, tok = _inputs(model)
    folder = save_hf_clip(model, tmp_path / "clip", tokenizer=False)  # tokenizer files: test_folder_keeps_...
    assert is_hf_clip_folder(folder) and not is_hf_clip_folder(tmp_path)
    assert {f.name for f in folder.iterdir()} == {"config.json", "model.safetensors", "preprocessor_config.json"}
    back = load_hf_clip(folder)
    assert _same_state(back.model, model.model) and back.preprocess_cfg["mean"] == model.preprocess_cfg["mean"]
    assert (
        back.image_size == model.image_size == back.preprocess_cfg["size"]
        and back.context_length == model.context_length
    )
    assert (
        _diff(back.encode_image(px), model.encode_image(px)) < TOL
        and _diff(back.encode_text(TEXTS), model.encode_text(TEXTS)) < TOL
    )
    plain = transformers.CLIPModel.from_pretrained(str(folder)).eval()  # what LEAF's users run
    assert (
        max(
            _diff(a, b)
            for a, b in zip(_hf_embeds(plain, model, px, tok), (model.encode_image(px), model.encode_text(tok)))
        )
        < TOL
    )
    if hasattr(models, "register_model"):
        m = models.load_clip(f"hf-clip:{folder}")
        assert m.name == f"hf-clip:{folder}" and _diff(m.encode_image(px), model.encode_image(px)) < TOL


@torch.no_grad()
def test_a_folder_written_by_transformers_itself_loads(tmp_path):
    "A random transformers-native CLIP with OpenAI's legacy config values (eos_token_id 2, pad 1), no preprocessor."
    torch.manual_seed(0)
    cfg = transformers.CLIPConfig(
        text_config=dict(
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=16,
            eos_token_id=2,
            bos_token_id=0,
            pad_token_id=1,
            projection_dim=32,
        ),
        vision_config=dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=3,
            num_attention_heads=2,
            image_size=32,
            patch_size=16,
            projection_dim=32,
        ),
        projection_dim=32,
    )
    hf = transformers.CLIPModel(cfg).eval()
    hf.save_pretrained(str(tmp_path / "leaf"))
    m = load_hf_clip(tmp_path / "leaf")
    assert (
        m.model_cfg["quick_gelu"]
        and m.model_cfg["vision_cfg"]["mlp_ratio"] == 2.0
        and "pool_type" not in m.model_cfg["text_cfg"]
    )
    px, tok = _inputs(m)
    assert max(_diff(a, b) for a, b in zip(_hf_embeds(hf, m, px, tok), (m.encode_image(px), m.encode_text(tok)))) < TOL
    hf2 = openclip_to_hf(m)  # HF -> open_clip -> HF: same weights, same embeddings
    assert _same_state(hf2, hf)
    assert max(_diff(a, b) for a, b in zip(_hf_embeds(hf2, m, px, tok), _hf_embeds(hf, m, px, tok))) < TOL


def test_folder_keeps_mean_std_and_tokenizer(tmp_path):
    m = create_clip(SHAPES["w64-l2-h2-p8-i32-quickgelu"], {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}, seed=2)
    back = load_hf_clip(save_hf_clip(m, tmp_path / "c"))
    assert {"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"} <= {
        f.name for f in (tmp_path / "c").iterdir()
    }
    assert back.preprocess_cfg["mean"] == [0.5, 0.4, 0.3] and back.preprocess_cfg["std"] == [0.2, 0.25, 0.3]
    assert load_hf_clip(tmp_path / "c", precision="bf16").model.visual.proj.dtype == torch.bfloat16
    proc = json.loads((tmp_path / "c" / "preprocessor_config.json").read_text())
    assert proc["crop_size"] == {"height": 32, "width": 32} and proc["image_mean"] == [0.5, 0.4, 0.3]
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "c"))
    ids = hf_tok(TEXTS, padding="max_length", truncation=True, max_length=16, return_tensors="pt").input_ids
    tok = m.tokenize(TEXTS)
    n = tok.argmax(-1)
    assert torch.equal(ids.argmax(-1), n) and all(torch.equal(a[: k + 1], b[: k + 1]) for a, b, k in zip(ids, tok, n))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"vision_cfg": {"ls_init_value": 0.1}}, "layer scale"),
        ({"vision_cfg": {"pool_type": "avg"}}, "'avg' pooling"),
        ({"vision_cfg": {"no_ln_pre": True}}, "no ln_pre"),
        ({"vision_cfg": {"layers": [1, 1, 1, 1], "width": 16, "head_width": 16}}, "only ViT"),
        ({"text_cfg": {"no_causal_mask": True}}, "no causal mask"),
        ({"init_logit_bias": -10.0}, "logit bias"),
    ],
)
def test_unsupported_open_clip_features_are_refused(change, message):
    cfg = copy.deepcopy(SHAPES["w64-l2-h2-p8-i32-quickgelu"])
    for k, v in change.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) else v
    with pytest.raises(RobustClipError, match=message):
        openclip_to_hf(create_clip(cfg, seed=0))


def test_bad_transformers_configs_files_and_sizes_are_refused(tmp_path):
    hf = openclip_to_hf(create_clip(SHAPES["w64-l2-h2-p8-i32-quickgelu"], seed=0))
    cfg = copy.deepcopy(hf.config)
    cfg.text_config.hidden_act = "gelu"
    with pytest.raises(RobustClipError, match="different activations"):
        openclip_config(cfg)
    cfg.vision_config.hidden_act = cfg.text_config.hidden_act = "gelu_new"
    with pytest.raises(RobustClipError, match="gelu_new"):
        openclip_config(cfg)
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text('{"model_type": "llama"}')
    for bad in (tmp_path / "llama", tmp_path / "missing"):
        assert not is_hf_clip_folder(bad)
        with pytest.raises(RobustClipError, match="not a transformers CLIP folder"):
            load_hf_clip(bad)
    folder = save_hf_clip(create_clip(SHAPES["w64-l2-h2-p8-i32-quickgelu"]), tmp_path / "c", tokenizer=False)
    with pytest.raises(RobustClipError, match="precision"):
        load_hf_clip(folder, precision="fp8")
    with pytest.raises(RobustClipError, match="multiple of the patch size"):
        interpolate_pos_embed(hf, 36)
    m = create_clip(SHAPES["w64-l2-h2-p8-i32-quickgelu"])
    m.tokenizer = object()
    assert save_hf_tokenizer(m, tmp_path / "t") is False
