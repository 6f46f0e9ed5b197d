"The mini world and mini-base: determinism, held-out handwriting, and the accuracy target of the Foundation issue."

import json
import pytest
import torch

from robustclip.data.core import get_dataset
from robustclip.mini.world import ATTRIBUTES, render, split_glyphs, mini_captions, mini_text


def test_world_is_deterministic_and_seeded():
    a, b = render(300, "test", 3), render(300, "test", 3)
    assert torch.equal(a[0], b[0]) and all(torch.equal(a[1][k], b[1][k]) for k in ATTRIBUTES)
    render.cache_clear()
    c = render(300, "test", 3)
    assert torch.equal(a[0], c[0])  # not only the cache: regenerating gives the same bytes
    assert not torch.equal(a[0], render(300, "test", 4)[0])


def test_every_attribute_value_occurs():
    _, a = render(2000, "train", 0)
    for k, names in ATTRIBUTES.items():
        assert torch.bincount(a[k], minlength=len(names)).min() > 2000 / len(names) / 2, k


def test_test_split_uses_held_out_glyphs():
    assert not set(split_glyphs("train").tolist()) & set(split_glyphs("test").tolist())


@pytest.mark.parametrize("size", [24, 32, 64])
def test_image_size_is_configurable(size):
    task = get_dataset("mini/position", n=16, image_size=size)
    assert task.dataset[0][0].shape == (3, size, size)


def test_captions_name_attributes_in_varied_words():
    caps = [c for cs in mini_captions("train", n=200) for c in cs]
    assert len(set(caps)) > 0.8 * len(caps)
    assert any(" 7 " in f" {c} " for c in caps) and any("seven" in c for c in caps)
    assert any("grey" in c for c in caps) and any("gray" in c for c in caps)


def test_text_task_labels_match_the_named_colour():
    from robustclip.mini.world import COLORS

    t = mini_text(n=200)
    for s, y in zip(t.texts, t.labels):
        assert list(COLORS)[y] in s.split(), (s, y)


@pytest.mark.parametrize("task", ["mini/digit", "mini/color", "mini/background", "mini/size", "mini/position"])
def test_mini_base_meets_the_accuracy_target(mini_base, task):
    "The Foundation target: clean zero-shot top-1 >= 85 % on 1,000 held-out test images."
    from robustclip.zeroshot import evaluate_zeroshot

    acc = evaluate_zeroshot(mini_base, get_dataset(task), n_samples=1000)["acc1"]
    assert acc >= 0.85, f"{task}: {acc:.3f}"


def test_mini_base_report_is_written_with_the_cache(mini_base):
    from robustclip.mini.pretrain import mini_base_dir

    rep = json.loads((mini_base_dir() / "report.json").read_text())
    assert set(rep["zeroshot_acc1"]) == {f"mini/{k}" for k in ATTRIBUTES} and rep["train_seconds"] > 0


def test_shipped_mini_base_scores_its_shipped_report():
    "The shipped weights give the shipped report.json here too (on another CPU a few of 1,000 images may move)."
    from robustclip.mini.pretrain import MINI_BASE, mini_base_report, shipped_weights
    from robustclip.models import load_clip

    src, _ = shipped_weights("mini-base", MINI_BASE)
    assert mini_base_report(load_clip(f"local-dir:{src}"), 1000) == pytest.approx(
        json.loads((src / "report.json").read_text())["zeroshot_acc1"], abs=0.003
    )


# ------------------------------------------------------------------------- shipped weights and self-checking caches
SHIPPED_BASE = ["open_clip_config.json", "open_clip_model.safetensors", "recipe.json", "report.json"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    "An empty ROBUSTCLIP_HOME: a fresh clone's first use."
    monkeypatch.setenv("ROBUSTCLIP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _warnings(capfd) -> list[str]:
    return [l for l in capfd.readouterr().err.splitlines() if l.strip()]


def test_shipped_mini_base_matches_its_manifest_and_recipe():
    from robustclip.core import config_hash
    from robustclip.mini.pretrain import MINI_BASE, SHIPPED, file_sha256, shipped_weights

    src, files = shipped_weights("mini-base", MINI_BASE)
    assert src == SHIPPED / f"mini-base-{config_hash(MINI_BASE)}" and sorted(files) == SHIPPED_BASE
    assert all(file_sha256(src / f) == h for f, h in files.items())
    assert json.loads((src / "recipe.json").read_text()) == json.loads(json.dumps(MINI_BASE))
    assert shipped_weights("mini-base", {**MINI_BASE, "steps": 10}) is None


def test_fresh_cache_is_filled_from_the_shipped_weights_in_seconds(home, capfd):
    import time
    from robustclip.mini.pretrain import HASHES, MINI_BASE, mini_base_dir, shipped_weights
    from robustclip.models import load_clip

    t0 = time.time()
    m = load_clip("mini-base")
    secs = time.time() - t0
    src, files = shipped_weights("mini-base", MINI_BASE)
    d = mini_base_dir()
    assert secs < 30, f"loading mini-base into a fresh cache took {secs:.1f} s"
    assert d.parent.parent == home and all((d / f).read_bytes() == (src / f).read_bytes() for f in files)
    assert json.loads((d / HASHES).read_text()) == {"source": "shipped", "files": files}
    assert json.loads((d / "report.json").read_text())["zeroshot_acc1"]["mini/digit"] == 0.893
    assert m.pretrained == "mini-world" and _warnings(capfd) == []  # nothing was broken: no warning


def _truncate(p):
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


def _flip(p):
    b = bytearray(p.read_bytes())
    b[-1] ^= 1
    p.write_bytes(bytes(b))


@pytest.mark.parametrize(
    "damage, says",
    [
        (lambda d: (d / "report.json").unlink(), "report.json is missing"),  # weights but no report
        (lambda d: _truncate(d / "open_clip_model.safetensors"), "open_clip_model.safetensors does not match"),
        (lambda d: _flip(d / "open_clip_model.safetensors"), "open_clip_model.safetensors does not match"),
        (lambda d: (d / "sha256.json").write_text("{not json"), "sha256.json is unreadable"),
        (lambda d: (d / "sha256.json").unlink() or _flip(d / "open_clip_model.safetensors"), "sha256.json is missing"),
    ],
    ids=["no-report", "truncated", "one-bit", "garbled-hashes", "old-cache-not-shipped"],
)
def test_broken_mini_base_cache_is_restored_with_one_warning(home, capfd, damage, says):
    from robustclip.mini.pretrain import MINI_BASE, cache_problem, mini_base_dir, shipped_weights

    d = mini_base_dir()
    _warnings(capfd)
    damage(d)
    assert mini_base_dir() == d
    err = _warnings(capfd)
    assert len(err) == 1 and says in err[0] and "restoring the shipped weights" in err[0], err
    src, files = shipped_weights("mini-base", MINI_BASE)
    assert cache_problem(d) is None and all((d / f).read_bytes() == (src / f).read_bytes() for f in files)


def test_cache_written_before_hashes_is_adopted_when_it_is_the_shipped_one(home, capfd):
    "The caches of earlier versions have no sha256.json: byte-identical to the shipped weights, they are kept as is."
    from robustclip.mini.pretrain import HASHES, mini_base_dir

    d = mini_base_dir()
    (d / HASHES).unlink()
    _warnings(capfd)
    mtime = (d / "open_clip_model.safetensors").stat().st_mtime_ns
    assert mini_base_dir() == d and _warnings(capfd) == []
    assert (d / "open_clip_model.safetensors").stat().st_mtime_ns == mtime and (d / HASHES).exists()


def test_corrupt_shipped_weights_fall_back_to_training(home, capfd, tmp_path, monkeypatch):
    "The policy with a toy model: shipped files whose hash does not match are not used; the model is built instead."
    import hashlib
    from robustclip.core import config_hash
    from robustclip.mini import pretrain as mp

    cfg = {"toy": 1}
    ship = tmp_path / "weights"
    (ship / f"toy-{config_hash(cfg)}").mkdir(parents=True)
    (ship / f"toy-{config_hash(cfg)}" / "w.bin").write_bytes(b"shipped")
    files = {"w.bin": hashlib.sha256(b"shipped").hexdigest()}
    (ship / "manifest.json").write_text(json.dumps({"weights": {f"toy-{config_hash(cfg)}": {"files": files}}}))
    monkeypatch.setattr(mp, "SHIPPED", ship)
    built = []

    def build(d):
        d.mkdir(parents=True, exist_ok=True)
        (d / "w.bin").write_bytes(b"trained")
        built.append(d)

    d = mp.cached_weights("toy", cfg, build)
    assert (d / "w.bin").read_bytes() == b"shipped" and not built and _warnings(capfd) == []
    (d / "w.bin").unlink()
    (ship / f"toy-{config_hash(cfg)}" / "w.bin").write_bytes(b"shipped, but damaged")
    d = mp.cached_weights("toy", cfg, build)
    err = _warnings(capfd)
    assert (d / "w.bin").read_bytes() == b"trained" and built == [d]
    assert len(err) == 2 and "not trusted (w.bin is missing)" in err[0] and "cannot be used" in err[1], err
    assert json.loads((d / "sha256.json").read_text())["source"] == "trained"


def test_pretraining_still_works_on_a_short_recipe(home):
    "The pretraining code itself (the full recipe is not run by the tests: its weights ship): trains, caches, reports."
    import math
    from robustclip.mini.pretrain import HASHES, MINI_BASE, mini_base_dir, pretrain_mini

    short = {
        **MINI_BASE,
        "steps": 30,
        "batch_size": 32,
        "n_train": 256,
        "warmup": 5,
        "batches": [[30, ["all"]]],
        "threads": 1,
    }
    d = mini_base_dir(short, report_n=50)
    rep = json.loads((d / "report.json").read_text())
    assert json.loads((d / HASHES).read_text())["source"] == "trained" and rep["final_loss"] < math.log(32)
    assert set(rep["zeroshot_acc1"]) == {f"mini/{k}" for k in ATTRIBUTES}
    again = pretrain_mini(short, show=False)  # deterministic: the same bits as the cached weights
    from robustclip.models import load_clip

    cached = load_clip(f"local-dir:{d}")
    assert all(torch.equal(p, q) for p, q in zip(again.model.parameters(), cached.model.parameters()))


def test_pretrain_mini_rebuild_reports_beside_the_shipped_weights(home, capsys, monkeypatch):
    "`robustclip pretrain-mini --rebuild` retrains (faked here: minutes otherwise) and prints both reports."
    from robustclip.app.cli import main
    from robustclip.mini import pretrain as mp
    from robustclip.models import load_local_dir, save_clip

    src, _ = mp.shipped_weights("mini-base", mp.MINI_BASE)

    def fake_pretrain(cfg, out_dir=None, show=True):
        m = load_local_dir(src, "mini-base", "fp32", "cpu")
        with torch.no_grad():
            m.model.logit_scale.add_(0.01)  # not quite the shipped weights
        m.info = {"train_seconds": 1.0, "final_loss": 3.5}
        save_clip(m, out_dir)
        return m

    monkeypatch.setattr(mp, "pretrain_mini", fake_pretrain)
    monkeypatch.setattr(mp, "mini_base_report", lambda m, n: {f"mini/{k}": 0.8 for k in ATTRIBUTES})
    assert main(["pretrain-mini"]) == 0 and "(the shipped weights)" in capsys.readouterr().out
    assert main(["pretrain-mini", "--rebuild"]) == 0
    out = capsys.readouterr().out
    assert (
        "trained here in 1.0 s" in out
        and "mini/digit       clean zero-shot top-1 0.800   shipped 0.893 (-0.093)" in out
    )
    assert "differ from the shipped ones" in out and "delete" in out
    assert (
        json.loads((mp.mini_base_dir() / "sha256.json").read_text())["source"] == "trained"
    )  # the cache is the rebuild now
