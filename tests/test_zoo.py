"""The zoo: every entry loads its stand-in through `zoo:NAME` from a cache folder, offline; a missing entry fails in
one line naming the hub id and the cache path; the reported numbers are methods.md's; `robustclip zoo` lists them.

Stand-ins (`robustclip.zoo.write_standin`) have the release's format, file names and state-dict key names with tiny
random weights, written where the entry's files belong: a Hugging Face cache snapshot (HF_HUB_CACHE points at a
temporary folder here) or `$ROBUSTCLIP_HOME/zoo` for the files released without a hub id.
"""

import json
import re
from pathlib import Path

import pytest
import torch

from robustclip.core import RobustClipError
from robustclip.models import load_clip, create_clip
from robustclip.zoo import ZOO, ZooEntry, write_standin, tiny_config, zoo_entry, entry_files

METHODS_MD = Path("/work/shared/reference/methods.md")  # the reference digest (absent in CI: that check skips)


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    "An empty Hugging Face cache and robustclip home, the hub unreachable by setting."
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ROBUSTCLIP_HOME", str(tmp_path / "home"))
    return tmp_path / "hub"


def _keys(entry: ZooEntry, where: Path) -> set[str]:
    "The state-dict keys of a stand-in's weight file, as the release names them."
    if entry.format == "vision-state-dict":
        return set(torch.load(where, weights_only=True))
    if entry.format == "open_clip":
        return set(torch.load(where / "open_clip_pytorch_model.bin", weights_only=True))
    from safetensors.torch import load_file

    return set(load_file(str(where / "model.safetensors")))


_KEY_NAMES = {  # a few key names each release format has (open_clip's CLIP, transformers' CLIPModel, a visual tower)
    "open_clip": {"token_embedding.weight", "text_projection", "logit_scale"},
    "transformers": {"text_model.embeddings.token_embedding.weight", "text_projection.weight", "logit_scale"},
    "vision-state-dict": {"proj"},
}


@pytest.mark.parametrize("name", list(ZOO))
def test_each_entry_loads_its_standin_through_zoo_spec(name, offline_cache):
    e = ZOO[name]
    where = write_standin(e, offline_cache, seed=3)
    keys = _keys(e, where)
    assert _KEY_NAMES[e.format] <= keys, sorted(keys)[:8]
    if e.format == "vision-state-dict":
        assert not any(k.startswith("visual.") for k in keys)  # the tower alone, as FARE/TeCoA/Sim-CLIP release it
    m = load_clip(f"zoo:{name}")
    assert m.name == f"zoo:{name}"
    base = ZOO[e.base] if e.base else e
    ref = create_clip(tiny_config(base.arch, base.quick_gelu), seed=3)  # what write_standin wrote
    if e.base:
        ref.model.visual.load_state_dict(
            create_clip(tiny_config(base.arch, base.quick_gelu), seed=4).model.visual.state_dict()
        )
    x = torch.rand(2, 3, m.image_size, m.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(m.encode_image(x), ref.encode_image(x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(
            m.encode_text(["a red seven"]), ref.encode_text(["a red seven"]), rtol=1e-4, atol=1e-5
        )
    if e.quick_gelu and e.format != "transformers" and "timm_model_name" not in tiny_config(e.arch)["vision_cfg"]:
        assert type(m.model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"


def test_missing_entry_is_one_line_naming_hub_id_and_cache(offline_cache):
    with pytest.raises(RobustClipError) as e:
        load_clip("zoo:fare2-vitl")
    msg = str(e.value)
    assert "\n" not in msg and "chs20/fare2-clip" in msg and str(offline_cache) in msg
    with pytest.raises(RobustClipError) as e:
        load_clip("zoo:simclip4-vitl")
    assert "hossainzarif19/SimCLIP (simclip4.pt)" in str(e.value) and str(offline_cache) in str(e.value)
    with pytest.raises(RobustClipError) as e:
        load_clip("zoo:fare1-vitb32")
    msg = str(e.value)
    assert "vitb32_fare_eps_1.pt" in msg and "zoo" in msg and ZOO["fare1-vitb32"].url in msg
    assert not offline_cache.exists()  # a failed lookup creates no cache folder


def test_unknown_entry_suggests_close_names():
    with pytest.raises(RobustClipError, match="did you mean fare4-vitl"):
        load_clip("zoo:fare4-vitL")


def test_quick_gelu_is_set_where_the_folder_config_omits_it(offline_cache):
    "OpenAI-descended weights need QuickGELU; a hub config that does not say so still loads with it."
    snap = write_standin("tecoa4-vitl", offline_cache, seed=5)
    cfg = json.loads((snap / "open_clip_config.json").read_text())
    cfg["model_cfg"].pop("quick_gelu")
    (snap / "open_clip_config.json").write_text(json.dumps(cfg))
    m = load_clip("zoo:tecoa4-vitl")
    assert type(m.model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    ref = create_clip(tiny_config("ViT-L-14", True), seed=5)
    x = torch.rand(1, 3, m.image_size, m.image_size)
    with torch.no_grad():
        torch.testing.assert_close(m.encode_image(x), ref.encode_image(x))


def test_weights_only_snapshot_is_built_from_the_entry_arch(offline_cache, monkeypatch):
    "open_clip's own download of a pretrained tag keeps only the weights: the entry's architecture builds the model."
    e = ZooEntry("tiny-weights", "RC-Tiny-ViT", "open_clip", "test", "none", hub_id="org/tiny-weights")
    monkeypatch.setitem(ZOO, e.name, e)
    snap = write_standin(e, offline_cache)
    (snap / "open_clip_config.json").unlink()
    torch.manual_seed(7)
    ref = load_clip("RC-Tiny-ViT")
    torch.save(ref.model.state_dict(), snap / "open_clip_pytorch_model.bin")
    m = load_clip("zoo:tiny-weights")
    assert m.name == "zoo:tiny-weights" and m.model_cfg["vision_cfg"] == ref.model_cfg["vision_cfg"]
    assert all(torch.equal(v, ref.model.state_dict()[k]) for k, v in m.model.state_dict().items())


def test_entries_are_complete_and_point_at_each_other():
    for e in ZOO.values():
        assert e.licence and e.paper and (e.hub_id or e.url)
        assert e.anchor is None or e.anchor in ZOO
        assert e.base is None or ZOO[e.base].format != "vision-state-dict"
    robust = {e.robust for e in ZOO.values()}
    assert robust == {"none", "image", "text", "image+text"}
    names = set(ZOO)
    for want in (
        "fare2-vitl",
        "tecoa4-vitl",
        "fare1-vitb32",
        "tecoa4-vitb32",
        "leaf-vitl",
        "leaf-vith",
        "leaf-vitg",
        "leaf-vitbigg",
        "simclip2-vitl",
        "simclip4-vitl",
        "clip-vitl14",
        "clip-vitb32",
        "clip-vith-laion",
    ):
        assert want in names
    assert all(not r.verified for e in ZOO.values() if e.paper.startswith("LEAF") for r in e.reported)


_T4 = {
    "CLIP": "clip-vitl14",
    "TeCoA2": "tecoa2-vitl",
    "FARE2": "fare2-vitl",
    "TeCoA4": "tecoa4-vitl",
    "FARE4": "fare4-vitl",
}


@pytest.mark.skipif(not METHODS_MD.exists(), reason="methods.md is not on this machine")
def test_table4_numbers_are_methods_md():
    "FARE Table 4 as methods.md §2.7 prints it: ImageNet and the average zero-shot, clean / 2/255 / 4/255, per model."
    text = METHODS_MD.read_text()
    section = text[text.index("**Table 4") : text.index("**Table 1 ")]
    seen = 0
    for line in section.splitlines():
        cells = [c.strip().strip("*").replace(" (*)", "").strip("*") for c in line.strip("|").split("|")]
        if len(cells) == 17 and cells[1] in _T4:
            budget = None if cells[0] == "clean" else cells[0]
            rep = {r.metric: r.value for r in ZOO[_T4[cells[1]]].reported if r.source == "FARE Table 4"}
            sfx = "clean" if budget is None else f"robust {budget}"
            assert rep[f"source {sfx}"] == float(cells[2]) and rep[f"transfer {sfx}"] == float(cells[16]), line
            seen += 1
    assert seen == 15


def test_zoo_command_lists_every_entry_and_shows_one(capsys, offline_cache):
    from robustclip.app.cli import main

    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    for name in ZOO:
        assert re.search(rf"^zoo:{re.escape(name)}\s", out, re.M), name
    assert main(["zoo", "zoo:leaf-vitl"]) == 0
    out = capsys.readouterr().out
    assert "LEAF-CLIP/CLIP-ViT-L-rho50-k1-constrained-FARE2" in out and "not on this machine" in out and "†" in out
    write_standin("leaf-vitl", offline_cache)
    assert main(["zoo", "leaf-vitl"]) == 0
    assert "on this machine: " + str(offline_cache) in capsys.readouterr().out
    assert main(["zoo", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == len(ZOO)
    assert main(["zoo", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("robustclip zoo: error: no zoo entry 'nope'")
