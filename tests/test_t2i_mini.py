"mini-t2i and its attribute judge: shipped, restored into a fresh cache without retraining, and prompt-following."

import json
import time

import pytest
import torch

pytest.importorskip("diffusers")


@pytest.fixture
def home(tmp_path, monkeypatch):
    "An empty ROBUSTCLIP_HOME: a fresh clone's first use."
    monkeypatch.setenv("ROBUSTCLIP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.parametrize(
    "name, cfg_name, files",
    [
        ("mini-t2i", "MINI_T2I", ["mini_t2i.json", "recipe.json", "report.json", "unet.safetensors"]),
        ("mini-t2i-judge", "MINI_JUDGE", ["judge.safetensors", "recipe.json", "report.json"]),
    ],
)
def test_shipped_weights_match_manifest_and_recipe(name, cfg_name, files):
    import robustclip.mini.t2i as t2i
    from robustclip.mini.pretrain import file_sha256, shipped_weights

    cfg = getattr(t2i, cfg_name)
    src, hashes = shipped_weights(name, cfg)
    assert sorted(hashes) == files and all(file_sha256(src / f) == h for f, h in hashes.items())
    assert json.loads((src / "recipe.json").read_text()) == json.loads(json.dumps(cfg))
    assert sum((src / f).stat().st_size for f in files) < 5_000_000  # a few MB at most


def test_shipped_report_follows_the_prompt():
    "Judge accuracy on generations from held-out captions is far above chance for colour, position and size."
    from robustclip.mini.pretrain import shipped_weights
    from robustclip.mini.t2i import MINI_T2I, MINI_JUDGE

    rep = json.loads((shipped_weights("mini-t2i", MINI_T2I)[0] / "report.json").read_text())["clean"]["per_attribute"]
    jrep = json.loads((shipped_weights("mini-t2i-judge", MINI_JUDGE)[0] / "report.json").read_text())["test_acc"]
    assert rep["color"] > 0.5 and rep["position"] > 0.5 and rep["size"] > 0.75  # chance: 1/6, 1/4, 1/2
    assert min(jrep["color"], jrep["position"], jrep["size"], jrep["background"]) > 0.95


def test_fresh_cache_is_filled_from_shipped_weights_and_swaps_towers(home):
    from robustclip.downstream.t2i import swap_text
    from robustclip.models import load_clip
    from robustclip.mini.t2i import load_attribute_net, load_mini_t2i, mini_t2i_dir

    t0 = time.time()
    m = load_mini_t2i()
    net = load_attribute_net()
    secs = time.time() - t0
    assert secs < 60, f"restoring mini-t2i took {secs:.1f} s (it retrained?)"
    assert json.loads((mini_t2i_dir() / "sha256.json").read_text())["source"] == "shipped"
    m.sample_steps = 4
    img = m.generate(["a large red digit seven in the top left on a black background"] * 2, [0, 1])
    assert img.shape == (2, 3, 32, 32) and img.dtype == torch.uint8
    assert torch.equal(img[:1], m.generate(["a large red digit seven in the top left on a black background"], [0]))
    other = load_clip("mini-base")
    swap_text(m, other)  # same tower: same images
    assert torch.equal(img, m.generate(["a large red digit seven in the top left on a black background"] * 2, [0, 1]))
    assert set(net.predict(img)) == {"digit", "color", "background", "size", "position"}
