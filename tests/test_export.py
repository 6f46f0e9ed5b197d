"Export: a run as an open_clip folder and a released-format visual.pt, bimodal models, the hub folder."

import json
from pathlib import Path

import open_clip
import pytest
import torch

from robustclip.app.cli import main
from robustclip.models import load_clip, create_clip, save_clip
from robustclip.app.export import load_run, combine_towers, hub_folder
from robustclip.train.config import make_config
from robustclip.train.loop import train


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    "A 4-step FARE run of the random tiny ViT, stopped at step 2 once (so it has a mid-run checkpoint too)."
    from robustclip.data.core import write_image_folder

    d = tmp_path_factory.mktemp("exp")
    write_image_folder(
        d / "data",
        torch.rand(32, 3, 32, 32, generator=torch.Generator().manual_seed(0)),
        [i % 2 for i in range(32)],
        ["a", "b"],
    )
    kw = dict(
        model="RC-Tiny-ViT",
        pretrained=None,
        dataset=f"imagefolder:{d}/data",
        steps=4,
        batch_size=8,
        warmup=1,
        lr=1e-3,
        attack_steps=2,
        check_every=-1,
        threads=1,
        output_dir=str(d / "run"),
        keep_every=2,
        save_every=1,
    )
    train(make_config(kw))
    return d / "run"


def test_export_run_is_plain_open_clip(run, tmp_path):
    assert main(["export", "--run", str(run), "--output", str(tmp_path / "x")]) == 0
    x = torch.rand(2, 3, 32, 32)
    ours = load_clip(f"local-dir:{tmp_path}/x")
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tmp_path}/x")
    tok = open_clip.get_tokenizer(f"local-dir:{tmp_path}/x")
    torch.testing.assert_close(model.encode_image(ours.normalize(x)), ours.encode_image(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.encode_text(tok(["a b"])), ours.encode_text(["a b"]), rtol=1e-5, atol=1e-5)
    # the released FARE format: a vision-only state dict that loads into the base architecture
    base = load_clip("RC-Tiny-ViT", pretrained=str(tmp_path / "x" / "visual.pt"))
    torch.testing.assert_close(base.encode_image(x), ours.encode_image(x))


def test_export_a_mid_run_checkpoint(run, tmp_path):
    final, mid = load_run(run), load_run(run, "step_2.pt")
    x = torch.rand(1, 3, 32, 32)
    assert not torch.allclose(final.encode_image(x), mid.encode_image(x))
    assert "step 2" in mid.pretrained and "fare" in mid.pretrained
    assert (
        main(
            [
                "export",
                "--run",
                str(run),
                "--checkpoint",
                "step_2.pt",
                "--output",
                str(tmp_path / "m"),
                "--no-vision-only",
            ]
        )
        == 0
    )
    assert not (tmp_path / "m" / "visual.pt").exists()
    torch.testing.assert_close(load_clip(f"local-dir:{tmp_path}/m").encode_image(x), mid.encode_image(x))


def test_bimodal_export_and_its_errors(run, tmp_path, capsys):
    text_model = create_clip({**load_clip("RC-Tiny-ViT").model_cfg}, seed=3)
    save_clip(text_model, tmp_path / "t")
    assert (
        main(
            [
                "export",
                "--vision",
                f"local-dir:{run}/final",
                "--text",
                f"local-dir:{tmp_path}/t",
                "--output",
                str(tmp_path / "vt"),
            ]
        )
        == 0
    )
    vt, v = load_clip(f"local-dir:{tmp_path}/vt"), load_run(run)
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(vt.encode_image(x), v.encode_image(x))
    torch.testing.assert_close(vt.encode_text(["a b"]), text_model.encode_text(["a b"]))
    wide = create_clip({**text_model.model_cfg, "embed_dim": 48}, seed=0)
    save_clip(wide, tmp_path / "w")
    capsys.readouterr()
    assert (
        main(
            [
                "export",
                "--vision",
                f"local-dir:{run}/final",
                "--text",
                f"local-dir:{tmp_path}/w",
                "--output",
                str(tmp_path / "bad"),
            ]
        )
        == 2
    )
    assert "embeds in 64 dimensions but the text model in 48" in capsys.readouterr().err
    qg = create_clip({**text_model.model_cfg, "quick_gelu": True}, seed=0)
    with pytest.raises(Exception, match="quick_gelu"):
        combine_towers(v, qg)


def test_push_to_hub_dry_run_writes_the_upload_folder(run, tmp_path):
    assert (
        main(["push-to-hub", "--run", str(run), "--repo-id", "me/fare-tiny", "--dry-run", str(tmp_path / "hub")]) == 0
    )
    files = sorted(p.name for p in (tmp_path / "hub").iterdir())
    assert files == ["README.md", "open_clip_config.json", "open_clip_model.safetensors"]
    readme = (tmp_path / "hub" / "README.md").read_text()
    assert "library_name: open_clip" in readme and "hf-hub:me/fare-tiny" in readme
    cfg = json.loads((tmp_path / "hub" / "open_clip_config.json").read_text())
    assert {"model_cfg", "preprocess_cfg"} <= set(cfg)
    m = open_clip.create_model(f"local-dir:{tmp_path}/hub")  # what hf-hub: will load
    torch.testing.assert_close(m.visual.proj, load_run(run).model.visual.proj)
    assert main(["push-to-hub", "--run", str(run), "--repo-id", "bad", "--dry-run", str(tmp_path / "h2")]) == 2
