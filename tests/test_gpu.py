"""CUDA paths: the same numbers as the CPU (fp32), bf16 autocast close to fp32, training and torchrun (NCCL) on a GPU.

Skipped where no GPU is visible (CI). Run on a GPU machine with the GPU made visible (conftest hides it by default):

    CUDA_VISIBLE_DEVICES=0 python -m pytest -m gpu tests/test_gpu.py
"""

import json
import math
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")]


def test_cuda_encoders_match_cpu(tiny):
    "fp32 image and text embeddings on the GPU equal the CPU's up to float reordering (TF32 off)."
    from robustclip.models import load_clip

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    gpu = load_clip("RC-Tiny-ViT", device="cuda")
    x = torch.rand(8, 3, tiny.image_size, tiny.image_size, generator=torch.Generator().manual_seed(0))
    texts = ["a red seven.", "a small digit in the top left"]
    with torch.no_grad():
        torch.testing.assert_close(gpu.encode_image(x.cuda()).cpu(), tiny.encode_image(x), rtol=1e-3, atol=5e-4)
        torch.testing.assert_close(gpu.encode_text(texts).cpu(), tiny.encode_text(texts), rtol=1e-3, atol=5e-4)


def _robust(model, device, precision, n=256):
    from robustclip.attacks.base import RobustnessWarning
    from robustclip.eval.zeroshot import eval_zeroshot

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r = eval_zeroshot(
            model,
            "mini/position",
            n_samples=n,
            device=device,
            attack="apgd-ce,apgd-t",
            eps="8/255",
            iterations=30,
            restarts=1,
            n_target_classes=3,
            precision=precision,
            seed=0,
        )
    bad = [str(x.message) for x in w if issubclass(x.category, RobustnessWarning)]
    assert not bad, bad  # the cascade's own sanity checks pass on this device
    return r["metrics"]


@pytest.fixture(scope="module")
def robust_cpu(mini_base):
    return _robust(mini_base, "cpu", "fp32")


def test_cuda_robust_accuracy_matches_cpu(mini_base, robust_cpu):
    "APGD-CE + APGD-T on the GPU (fp32) gives the CPU's clean accuracy and its robust accuracy within 2 points."
    m = _robust(mini_base, "cuda", "fp32")
    assert m["acc1"] == robust_cpu["acc1"]
    assert abs(m["robust_acc1"] - robust_cpu["robust_acc1"]) <= 0.02, (m["robust_acc1"], robust_cpu["robust_acc1"])


def test_cuda_bf16_attack_close_to_fp32(mini_base, robust_cpu):
    "bf16 autocast attacks land within 4 points of fp32 (bf16 gradients are coarser; the papers attack in fp32)."
    m = _robust(mini_base, "cuda", "bf16")
    assert abs(m["acc1"] - robust_cpu["acc1"]) <= 0.01
    assert abs(m["robust_acc1"] - robust_cpu["robust_acc1"]) <= 0.04, (m["robust_acc1"], robust_cpu["robust_acc1"])


def _fare(tmp_path, name, **kw):
    from robustclip.data.core import write_image_folder
    from robustclip.train.config import make_config
    from robustclip.train.loop import train

    d = tmp_path / "data"
    if not d.exists():
        g = torch.Generator().manual_seed(0)
        write_image_folder(
            d, torch.rand(128, 3, 32, 32, generator=g), [i % 4 for i in range(128)], ["a", "b", "c", "d"]
        )
    cfg = make_config(
        dict(
            method="fare",
            model="RC-Tiny-ViT",
            pretrained=None,
            dataset=f"imagefolder:{d}",
            eps="8/255",
            steps=6,
            batch_size=32,
            warmup=1,
            lr=1e-4,
            attack_steps=3,
            check_every=-1,
            log_every=1,
            output_dir=str(tmp_path / name),
            **kw,
        )
    )
    out = train(cfg)
    return [json.loads(l) for l in (Path(out["run_dir"]) / "metrics.jsonl").read_text().splitlines()]


def test_cuda_fare_training_fp32_matches_cpu_and_bf16_runs(tmp_path):
    "FARE steps on the GPU: fp32 losses equal the CPU's (same seeds), bf16 losses stay close; memory is logged."
    cpu = _fare(tmp_path, "cpu", device="cpu", threads=2)
    f32 = _fare(tmp_path, "f32", device="cuda")
    b16 = _fare(tmp_path, "b16", device="cuda", precision="bf16")
    lc, l32, l16 = ([r["loss"] for r in m] for m in (cpu, f32, b16))
    assert all(math.isfinite(v) for v in l32 + l16)
    assert "mem_gb" in f32[-1] and f32[-1]["mem_gb"] > 0
    torch.testing.assert_close(torch.tensor(l32), torch.tensor(lc), rtol=2e-3, atol=1e-6)
    torch.testing.assert_close(torch.tensor(l16), torch.tensor(l32), rtol=0.1, atol=1e-4)


def test_torchrun_nccl(tmp_path, root):
    "torchrun on the GPU picks NCCL and the CUDA device of its local rank, and writes a loadable model."
    from robustclip.data.core import write_image_folder
    from robustclip.models import load_clip

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not installed")
    g = torch.Generator().manual_seed(0)
    write_image_folder(
        tmp_path / "data", torch.rand(32, 3, 32, 32, generator=g), [i % 4 for i in range(32)], ["a", "b", "c", "d"]
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            dict(
                method="tecoa",
                model="RC-Tiny-ViT",
                pretrained=None,
                dataset=f"imagefolder:{tmp_path}/data",
                steps=4,
                batch_size=16,
                warmup=1,
                attack_steps=2,
                check_every=-1,
                log_every=2,
                precision="bf16",
                output_dir=str(tmp_path / "run"),
            )
        )
    )
    env = {
        **os.environ,
        "ROBUSTCLIP_PROGRESS": "0",
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    r = subprocess.run(
        [torchrun, "--nproc_per_node", "1", "--master_port", "29541", "-m", "robustclip", "train", str(cfg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 4 and rows[-1]["mem_gb"] > 0
    load_clip(f"local-dir:{tmp_path / 'run' / 'final'}")
