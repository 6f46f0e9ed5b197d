"torchrun with DDP on CPU (gloo): 2 processes give the weights of 1 process on the same global batch."

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

pytestmark = pytest.mark.skipif(
    shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None and shutil.which("torchrun") is None,
    reason="torchrun not installed",
)


def _torchrun() -> str:
    return shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")


def test_two_processes_equal_one(tmp_path, root):
    from robustclip.data.core import write_image_folder

    g = torch.Generator().manual_seed(0)
    write_image_folder(
        tmp_path / "data", torch.rand(32, 3, 32, 32, generator=g), [i % 4 for i in range(32)], ["a", "b", "c", "d"]
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            dict(
                method="fare",
                model="RC-Tiny-ViT",
                pretrained=None,
                dataset=f"imagefolder:{tmp_path}/data",
                steps=4,
                batch_size=16,
                warmup=1,
                lr=1e-3,
                attack_steps=3,
                check_every=-1,
                threads=1,
                log_every=2,
            )
        )
    )
    env = {
        **os.environ,
        "ROBUSTCLIP_PROGRESS": "0",
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    two = subprocess.run(
        [
            _torchrun(),
            "--nproc_per_node",
            "2",
            "--master_port",
            "29533",
            "-m",
            "robustclip",
            "train",
            str(cfg),
            f"output_dir={tmp_path}/two",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("step 4/4") == 1  # rank 0 reports, rank 1 stays quiet
    one = subprocess.run(
        [sys.executable, "-m", "robustclip", "train", str(cfg), f"output_dir={tmp_path}/one", "accum_steps=2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    A = load_file(str(tmp_path / "one" / "final" / "open_clip_model.safetensors"))
    B = load_file(str(tmp_path / "two" / "final" / "open_clip_model.safetensors"))
    assert A.keys() == B.keys()
    for k in A:
        torch.testing.assert_close(A[k], B[k], rtol=1e-5, atol=1e-6)
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # written once (by rank 0), at steps 2 and 4
