"""RobustVLM's ensemble against one full-precision APGD with the same total iterations, on mini-llava and a tiny LLaVA.

FARE App. B.7 / Table 11: the ensemble (clean output, one APGD per ground-truth caption, a full-precision APGD from
the best perturbation; samples whose CIDEr is already below the threshold are no longer attacked) is stronger than a
single long full-precision attack, and about 8x faster on GPU (its first stages run in half precision). Here both run
on the same images at the same budget, interleaved and repeated, on two LVLMs: mini-llava (nbs/52, trained) and the
tiny random stand-in of LLaVA-1.5-7B (`write_standin_llava`, nbs/73: LLaVA-1.5's architecture and chat template at
width 64, 2 layers, 336 px, 576 image tokens). A lower robust CIDEr is a stronger attack. The single attack gets
steps x stages iterations against the first ground truth. The ensemble's half-precision stages take the precision
`fastest_half` picks (fp16 on CUDA; on CPU bf16 only where a timed pass is clearly faster, else fp32), timed once
per LVLM before the runs. The caption scorer (`CorpusCider`) is built once per model outside the timing, as the
evaluation builds it once per set; before every run it forgets the captions it has seen (it keeps the words).
Peak memory: CUDA max allocated, else the process's peak RSS above the start.

A random LLaVA's captions score CIDEr ~0, below the threshold 10, so at the protocol's threshold the ensemble attacks
none of its images (it returns the clean captions at once). The tiny LLaVA therefore also runs at threshold 0
('tiny-llava@0': no image is ever dropped, the ensemble's worst case, where it pays its extra first pass, generation
and scoring per stage in full); that row is reported but is not one of the targets.

    python benchmarks/vlm_attack.py                       # 32 (mini) and 8 (tiny) images, 16/255, 10 steps/stage
    python benchmarks/vlm_attack.py --eps 8/255 --n 64 --steps 20 --device cuda
Prints a table, then one line of JSON: {"mini-llava": {...}, "tiny-llava": {...}, "all_targets_met": ...}; a
model's target is met when the ensemble's robust CIDEr is at most the single attack's and its median time at most
the single attack's median time.
"""

from __future__ import annotations
import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attacks import measure  # the same timing and peak-memory helper as the attack benchmark

import torch
import torch.nn.functional as F


def tiny_llava(folder: Path, words: list[str], device: torch.device):
    "The tiny random LLaVA-1.5 stand-in, written to `folder` with a tokenizer that knows `words`, loaded."
    from robustclip.plan.standins import write_standin_llava
    from robustclip.vlm.core import load_lvlm

    return load_lvlm(f"llava-hf:{write_standin_llava(folder, words)}", device=device)


def compare(lv, x, prompts, answers, *, eps, steps, threshold, repeats, dev) -> dict:
    "Interleaved, repeated runs of the ensemble and the single APGD on one LVLM; medians, and whether targets are met."
    from robustclip.vlm.attacks import EnsembleSpec, ensemble_attack, apgd_text, fastest_half
    from robustclip.vlm.metrics import CorpusCider, cider

    clean_texts = lv.generate(x, prompts)
    spec = EnsembleSpec(eps=eps, steps=steps, threshold=threshold, half="fastest")  # the fastest the device has
    stages = spec.n_gt + 1
    logs = []

    def ensemble(cc):
        r = ensemble_attack(lv, x, prompts, answers, cc, spec, clean_texts=clean_texts)
        logs.append(r.log)
        return r.texts

    def single(cc):
        r = apgd_text(lv, x, prompts, [c[0] for c in answers], eps=eps, steps=steps * stages)
        return lv.generate(r.x_adv, prompts)

    cc = CorpusCider(answers)  # built once per evaluated set by the evaluation: not timed
    fastest_half(lv, x, prompts, [c[0] for c in answers])  # once per LVLM and device (an evaluation's first batch)
    rows = {"ensemble": [], "single": []}
    for _ in range(repeats):  # interleaved: both see the same machine load
        for name, fn in (("ensemble", ensemble), ("single", single)):
            cc.seen.clear()  # no caption of an earlier repeat is known (the words are: a set's vocabulary)
            texts, sec, mib = measure(lambda: fn(cc), dev)
            rows[name].append((cider(texts, answers)["cider"], sec, mib))
    out = {
        "n": len(x),
        "steps_per_stage": steps,
        "stages": stages,
        "single_steps": steps * stages,
        "threshold": threshold,
        "clean_cider": round(cider(clean_texts, answers)["cider"], 2),
        "attacked_per_stage": [s["attacked"] for s in logs[-1]],
    }
    for name, rs in rows.items():
        c, s, m = statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs), max(r[2] for r in rs)
        out[f"{name}_robust_cider"], out[f"{name}_seconds"], out[f"{name}_peak_mib"] = (
            round(c, 2),
            round(s, 3),
            round(m, 1),
        )
        out[f"{name}_seconds_all"] = [round(r[1], 3) for r in rs]
    out["speedup_ensemble_vs_single"] = round(out["single_seconds"] / out["ensemble_seconds"], 2)
    out["ensemble_at_least_as_strong"] = out["ensemble_robust_cider"] <= out["single_robust_cider"]
    out["ensemble_no_slower"] = out["ensemble_seconds"] <= out["single_seconds"]
    out["targets_met"] = out["ensemble_at_least_as_strong"] and out["ensemble_no_slower"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="mini-llava images (mini/captions test split)")
    ap.add_argument("--tiny-n", type=int, default=8, help="tiny LLaVA images (the same split, resized to 336 px)")
    ap.add_argument("--eps", default="16/255")
    ap.add_argument("--steps", type=int, default=10, help="APGD steps per ensemble stage")
    ap.add_argument("--threshold", type=float, default=10.0, help="mini-llava: CIDEr below which a sample is done")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default="mini-llava,tiny-llava,tiny-llava@0")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    from robustclip.core import ThreatModel, load_plugins, get_device
    from robustclip.data.core import get_dataset
    from robustclip.vlm.core import load_lvlm, task_prompt
    from robustclip.vlm.attacks import fastest_half

    if a.threads:
        torch.set_num_threads(a.threads)
    load_plugins()
    dev = get_device(a.device)
    eps = ThreatModel.parse(a.eps).eps
    out = {"benchmark": "vlm_attack", "device": str(dev), "eps": a.eps, "repeats": a.repeats}
    out["threads"] = torch.get_num_threads()
    print(f"{'model':<11} {'attack':<9} {'robust CIDEr':>12} {'seconds (median)':>17} {'peak MiB':>9}")
    models = a.models.split(",")
    for model in models:
        n = a.n if model == "mini-llava" else a.tiny_n
        t = get_dataset("mini/captions", n=n)
        x = torch.stack([t.images[i] for i in range(n)]).to(dev)
        with tempfile.TemporaryDirectory() as tmp:
            if model == "mini-llava":
                lv = load_lvlm("mini-llava", device=dev)
            else:
                lv = tiny_llava(Path(tmp) / "llava", [c for cs in t.answers for c in cs], dev)
                x = F.interpolate(x, size=lv.image_size, mode="bilinear", align_corners=False).clamp(0, 1)
            prompts = [task_prompt("caption", None, lv.prompts)] * n
            thr = 0.0 if model.endswith("@0") else a.threshold
            r = compare(lv, x, prompts, t.answers, eps=eps, steps=a.steps, threshold=thr, repeats=a.repeats, dev=dev)
            r["half"] = fastest_half(lv, x, prompts, [c[0] for c in t.answers])
        out[model] = r
        for name in ("ensemble", "single"):
            c, s, m = r[f"{name}_robust_cider"], r[f"{name}_seconds"], r[f"{name}_peak_mib"]
            print(f"{model:<11} {name:<9} {c:12.1f} {s:17.2f} {m:9.0f}")
    out["all_targets_met"] = all(out[m]["targets_met"] for m in models if not m.endswith("@0"))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
