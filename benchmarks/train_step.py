"""Time one FARE and one TeCoA training step against the floor measured in the same process.

floor(FARE)  = (K+1) x (forward+backward of the vision tower) + 1 frozen forward   (K attack steps + the update)
floor(TeCoA) = (K+1) x (forward+backward of the vision tower)                      (no frozen model)
tight floor  = K x (forward+backward to the input only, as the attack does it: `torch.autograd.grad` to the pixels,
               which computes no parameter gradient) + 1 full forward+backward + (FARE) 1 frozen forward
ratio = step / floor, tight_ratio = step / tight floor (target <= 1.15 of the tight floor). The step is
`Trainer.train_step` (attack, loss, backward, AdamW, schedule), timed interleaved with the floor so both see the same
machine load; medians over --repeats. Peak memory is torch.cuda.max_memory_allocated on CUDA, else the process's
peak RSS (each case runs in its own process).

The tight floor's input-only passes keep the parameters as the trainer has them (requiring gradients). Until
2026-12-08 it switched `requires_grad` off around them, which on CPU made each pass slower, not faster (ViT-B-32,
batch 8: 1.10x): with frozen weights, PyTorch's matmul does not fold the (non-contiguous) input of open_clip's
attention projections into one matrix product and runs a batched product over a broadcast weight instead (profiled:
`aten::bmm` [50, 8, 768] x [50, 768, 2304]). The trainer's attack never froze its weights, so the old tight floor
sat above the step it bounds (FARE ViT-L-14: step 0.66x of it).

    python benchmarks/train_step.py                       # tiny (batch 64), random ViT-B-32 (8) and ViT-L-14 (2), CPU
    python benchmarks/train_step.py --device cuda --precision bf16
Prints a table, then one line of JSON.
"""

from __future__ import annotations
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

CASES = [("RC-Tiny-ViT", 64, 20), ("ViT-B-32", 8, 3), ("ViT-L-14", 2, 2)]  # (model, batch, repeats on CPU)


def _sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def worker(
    model_name: str, method: str, batch: int, *, repeats: int, device: str, precision: str, threads: int | None, K: int
) -> dict:
    import torch
    from robustclip.data.core import register_dataset, ClassificationTask
    from robustclip.train.config import make_config
    from robustclip.train.loop import Trainer
    from robustclip.models import load_clip

    if threads:
        torch.set_num_threads(threads)
    size = load_clip(model_name).image_size

    @register_dataset("bench/synthetic")
    def _synth(name, root=None, split="train", **kw):
        g = torch.Generator().manual_seed(0)
        xs = torch.rand(batch * (repeats + 2), 3, size, size, generator=g)
        return ClassificationTask(
            name, [(x, i % 10) for i, x in enumerate(xs)], [f"class {i}" for i in range(10)], ["a photo of a {c}."]
        )

    with tempfile.TemporaryDirectory() as d:
        cfg = make_config(
            method=method,
            model=model_name,
            pretrained=None,
            dataset="bench/synthetic",
            steps=repeats + 2,
            batch_size=batch,
            warmup=1,
            attack_steps=K,
            device=device,
            precision=precision,
            check_every=-1,
            output_dir=d,
            threads=threads,
        )
        tr = Trainer(cfg)
        dev = tr.info.device
        it = iter(tr.loader)
        model, anchor = tr.model, tr.method.anchor
        x = torch.rand(batch, 3, size, size, device=dev)

        def fb():
            with tr.autocast():
                e = model.encode_image(x)
            e.float().sum().backward()

        def fb_input():  # an attack pass: the gradient w.r.t. the input only
            xi = x.detach().requires_grad_(True)
            with tr.autocast():
                e = model.encode_image(xi)
            torch.autograd.grad(e.float().sum(), xi)

        def frozen():
            with torch.no_grad(), tr.autocast():
                (anchor or model).encode_image(x)

        def floor() -> float:
            _sync(dev)
            t = time.perf_counter()
            for _ in range(K + 1):
                fb()
            if method == "fare":
                frozen()
            _sync(dev)
            dt = time.perf_counter() - t
            model.zero_grad(set_to_none=True)
            return dt

        def tight() -> float:
            _sync(dev)
            t = time.perf_counter()
            for _ in range(K):
                fb_input()
            fb()
            if method == "fare":
                frozen()
            _sync(dev)
            dt = time.perf_counter() - t
            model.zero_grad(set_to_none=True)
            return dt

        def step() -> float:
            b = [next(it)]
            _sync(dev)
            t = time.perf_counter()
            tr.train_step(b)
            _sync(dev)
            return time.perf_counter() - t

        floor()
        tight()
        step()  # warm-up (allocator, kernels)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        fl, tl, st = [], [], []
        for _ in range(repeats):
            fl.append(floor())
            tl.append(tight())
            st.append(step())  # interleaved
        mem = (
            torch.cuda.max_memory_allocated() / 2**30
            if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        )
    f, ft, s = statistics.median(fl), statistics.median(tl), statistics.median(st)
    return {
        "model": model_name,
        "method": method,
        "batch": batch,
        "attack_steps": K,
        "device": str(dev),
        "precision": precision,
        "step_s": round(s, 4),
        "floor_s": round(f, 4),
        "ratio": round(s / f, 3),
        "tight_floor_s": round(ft, 4),
        "tight_ratio": round(s / ft, 3),
        "img_s": round(batch / s, 1),
        "peak_mem_gb": round(mem, 3),
        "mem_kind": "cuda_max_allocated" if dev.type == "cuda" else "peak_rss",
        "repeats": repeats,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--attack-steps", type=int, default=10)
    p.add_argument("--models", default=",".join(m for m, _, _ in CASES))
    p.add_argument("--repeats", type=int, default=None, help="override the per-model repeat count")
    p.add_argument("--methods", default="fare,tecoa", help="which methods' steps to time")
    p.add_argument("--worker", nargs=3, metavar=("MODEL", "METHOD", "BATCH"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    os.environ.setdefault("ROBUSTCLIP_PROGRESS", "0")
    if a.worker:
        m, meth, b = a.worker
        print(
            json.dumps(
                worker(
                    m,
                    meth,
                    int(b),
                    repeats=a.repeats or 3,
                    device=a.device,
                    precision=a.precision,
                    threads=a.threads,
                    K=a.attack_steps,
                )
            )
        )
        return 0
    rows = []
    for model, batch, reps in CASES:
        if model not in a.models.split(","):
            continue
        for meth in a.methods.split(","):
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                model,
                meth,
                str(batch),
                "--device",
                a.device,
                "--precision",
                a.precision,
                "--attack-steps",
                str(a.attack_steps),
                "--repeats",
                str(a.repeats or reps),
            ] + (["--threads", str(a.threads)] if a.threads else [])
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                print(r.stderr[-2000:], file=sys.stderr)
                return 1
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
            x = rows[-1]
            print(
                f"{x['model']:<12} {x['method']:<6} batch {x['batch']:<3} step {x['step_s']:8.4f}s  "
                f"floor {x['floor_s']:8.4f}s  ratio {x['ratio']:.3f}  tight {x['tight_floor_s']:8.4f}s "
                f"ratio {x['tight_ratio']:.3f}  {x['img_s']:8.1f} img/s  "
                f"peak {x['peak_mem_gb']:.2f} GB ({x['mem_kind']})",
                flush=True,
            )
    import torch

    print(
        json.dumps(
            {
                "benchmark": "train_step",
                "target_ratio": 1.15,
                "torch": torch.__version__,
                "threads": a.threads or torch.get_num_threads(),
                "results": rows,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
