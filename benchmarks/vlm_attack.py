"""RobustVLM's ensemble against one full-precision APGD with the same total iterations, on mini-llava.

FARE App. B.7 / Table 11: the ensemble (clean output, one APGD per ground-truth caption, a full-precision APGD from
the best perturbation; samples whose CIDEr is already below the threshold are no longer attacked) is stronger than a
single long full-precision attack, and about 8x faster on GPU (its first stages run in half precision). Here both run
on the same mini-llava images at the same budget, interleaved and repeated; a lower robust CIDEr is a stronger attack.
The single attack gets steps x (stages) iterations against the first ground truth. On CPU the ensemble's first stages
run in float32 (bfloat16 autocast is slower than float32 there), so its speed-up here comes from dropping broken
samples only. Peak memory: CUDA max allocated, else the process's peak RSS above the start.

    python benchmarks/vlm_attack.py                       # 32 images, 16/255, 10 steps per stage, CPU
    python benchmarks/vlm_attack.py --eps 8/255 --n 64 --steps 20 --device cuda
Prints a table, then one line of JSON.
"""

from __future__ import annotations
import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attacks import measure  # the same timing and peak-memory helper as the attack benchmark

import torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="images (mini/captions test split)")
    ap.add_argument("--eps", default="16/255")
    ap.add_argument("--steps", type=int, default=10, help="APGD steps per ensemble stage")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    from robustclip.core import ThreatModel, load_plugins, get_device
    from robustclip.data.core import get_dataset
    from robustclip.vlm.core import load_lvlm, task_prompt
    from robustclip.vlm.attacks import EnsembleSpec, ensemble_attack, apgd_text
    from robustclip.vlm.metrics import CorpusCider, cider

    if a.threads:
        torch.set_num_threads(a.threads)
    load_plugins()
    dev = get_device(a.device)
    eps = ThreatModel.parse(a.eps).eps
    lv = load_lvlm("mini-llava", device=dev)
    t = get_dataset("mini/captions", n=a.n)
    x = torch.stack([t.images[i] for i in range(a.n)]).to(dev)
    prompts = [task_prompt("caption", None, lv.prompts)] * a.n
    clean_texts = lv.generate(x, prompts)
    clean = cider(clean_texts, t.answers)["cider"]
    spec = EnsembleSpec(eps=eps, steps=a.steps, threshold=10.0)
    stages = spec.n_gt + 1

    def ensemble():
        return ensemble_attack(lv, x, prompts, t.answers, CorpusCider(t.answers), spec, clean_texts=clean_texts).texts

    def single():
        r = apgd_text(lv, x, prompts, [c[0] for c in t.answers], eps=eps, steps=a.steps * stages)
        return lv.generate(r.x_adv, prompts)

    rows = {"ensemble": [], "single": []}
    for _ in range(a.repeats):  # interleaved: both see the same machine load
        for name, fn in (("ensemble", ensemble), ("single", single)):
            texts, sec, mib = measure(fn, dev)
            rows[name].append((cider(texts, t.answers)["cider"], sec, mib))
    out = {
        "benchmark": "vlm_attack",
        "model": "mini-llava",
        "device": str(dev),
        "n": a.n,
        "eps": a.eps,
        "steps_per_stage": a.steps,
        "stages": stages,
        "single_steps": a.steps * stages,
        "clean_cider": round(clean, 2),
        "repeats": a.repeats,
        "threads": torch.get_num_threads(),
    }
    print(f"{'attack':<10} {'robust CIDEr':>12} {'seconds (median)':>17} {'peak MiB':>9}")
    for name, rs in rows.items():
        c, s, m = statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs), max(r[2] for r in rs)
        out[f"{name}_robust_cider"], out[f"{name}_seconds"], out[f"{name}_peak_mib"] = (
            round(c, 2),
            round(s, 2),
            round(m, 1),
        )
        print(f"{name:<10} {c:12.1f} {s:17.2f} {m:9.0f}")
    out["speedup_ensemble_vs_single"] = round(out["single_seconds"] / out["ensemble_seconds"], 2)
    out["ensemble_stronger"] = out["ensemble_robust_cider"] < out["single_robust_cider"]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
