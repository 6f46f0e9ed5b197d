"""Our APGD against torchattacks' port of AutoAttack's APGD, on the same model, images and budget.

    python benchmarks/attacks.py                  # mini-base on mini/color at 8/255 and 16/255, then a random ViT-B-32
    python benchmarks/attacks.py --eps 8/255 --n 256 --steps 100 --repeats 3 --no-vit
    python benchmarks/attacks.py --exact          # also our attack on the model itself (fast=False): strength check

For each budget: robustclip's APGD-CE (1 restart) against `torchattacks.APGD(loss='ce')`, and robustclip's APGD-T
(1 restart per target) against `torchattacks.APGDT` (n_classes = targets + 1), same iterations, restarts, eps and
images. Each pair runs `--repeats` times *interleaved* (ours then theirs, then theirs then ours, ...) so that a
machine shared with other jobs slows both alike; reported: the median time of each, img/s, the throughput ratio
(median of the per-repeat ratios theirs/ours, with its min and max), robust accuracy of both on the same points
(ours from our flags, checked against our images; theirs recomputed from their images), and peak memory (CUDA: max
allocated; CPU: the process's peak resident set above the baseline, via /proc/self/clear_refs). The random ViT-B-32
row (batch 32, 224 px, fewer iterations) gives the figure for a model where per-iteration overhead is negligible.
Targets: our robust accuracy <= theirs + 0.5 points, throughput >= 1.5x theirs (mini-base).
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations
import argparse
import inspect
import json
import os
import re
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch


def rss_reset() -> int:
    "Reset the peak-RSS counter (Linux) and return the current RSS in kB (0 where unsupported)."
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))
    except OSError:
        return 0


def rss_peak() -> int:
    try:
        return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))
    except OSError:
        return 0


def measure(fn, device: torch.device):
    "Run fn(); return (its result, seconds, peak memory in MiB above the start)."
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_reset()
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = max(rss_peak() - base, 0) / 1024
    return out, time.perf_counter() - t0, peak


def predict(clf, x, bs=256):
    with torch.no_grad():
        return torch.cat([clf(x[i : i + bs]).argmax(1) for i in range(0, len(x), bs)])


def setup(model_name: str, dataset: str, n: int, seed: int, dev, root=None):
    "The zero-shot classifier (parameters frozen for both sides) and n seeded test images with labels."
    from robustclip.models import load_clip
    from robustclip.data.core import get_dataset
    from robustclip.zeroshot import build_classifier, task_inputs, subset_indices

    torch.manual_seed(seed)
    model = load_clip(model_name, device=dev)
    task = get_dataset(dataset, root=root)
    clf = build_classifier(model, task).to(dev).eval()
    for q in clf.parameters():
        q.requires_grad_(False)
    data = task_inputs(task, model, subset_indices(len(task), n, seed))
    x = torch.stack([data[i][0] for i in range(len(data))]).to(dev)
    y = torch.tensor([int(data[i][1]) for i in range(len(data))]).to(dev)
    if clf.resize is None and x.shape[-1] != model.image_size:
        clf.resize = model.image_size
    return clf, x, y, task.name


def compare(label, clf, x, y, *, eps, attack, args, dev, steps, bs) -> dict:
    "One row: ours and theirs (and ours on the model itself with --exact), interleaved over the repeats."
    import torchattacks
    from robustclip.core import eps_str
    from robustclip.attacks.apgd import APGD

    C = clf.n_classes
    n_t = min(args.n_target_classes, C - 1)
    params = inspect.signature(APGD).parameters
    fast_ok = "fast" in params
    if "eps" in params:  # older APGD took eps as a float
        budget = dict(eps=eps)
    else:  # APGD takes the parsed threat model
        from robustclip.core import ThreatModel

        budget = dict(threat=ThreatModel(eps))
    kw = dict(**budget, steps=steps, restarts=args.restarts, seed=args.seed)
    if attack == "apgd-t":
        kw.update(loss="dlr-t", n_target_classes=n_t)
    else:
        kw.update(loss="ce")

    def ours_run(fast):
        a = APGD(clf, **kw, **({"fast": fast} if fast_ok else {}))
        outs = [a.run(x[i : i + bs], y[i : i + bs]) for i in range(0, len(x), bs)]
        return (
            torch.cat([o.x_adv for o in outs]),
            ~torch.cat([o.fooled for o in outs]),
            sum(getattr(o, "unconfirmed", 0) for o in outs),
        )

    def theirs_run():
        if attack == "apgd-t":
            t = torchattacks.APGDT(
                clf, norm="Linf", eps=eps, steps=steps, n_restarts=args.restarts, n_classes=n_t + 1, seed=args.seed
            )
        else:
            t = torchattacks.APGD(
                clf, norm="Linf", eps=eps, steps=steps, n_restarts=args.restarts, loss="ce", seed=args.seed
            )
        adv = torch.cat([t(x[i : i + bs], y[i : i + bs]) for i in range(0, len(x), bs)])
        return adv, predict(clf, adv) == y

    sides = {"ours": lambda: ours_run(True), "theirs": theirs_run}
    if args.exact and fast_ok:
        sides["exact"] = lambda: ours_run(False)
    times, peaks, flags = {k: [] for k in sides}, {k: 0.0 for k in sides}, {}
    for r in range(args.repeats):
        for k in list(sides) if r % 2 == 0 else list(sides)[::-1]:
            out, s, mb = measure(sides[k], dev)
            times[k].append(s)
            peaks[k] = max(peaks[k], mb)
            if k not in flags:
                flags[k] = out
            elif not torch.equal(flags[k][1], out[1]):
                print(f"  warning: {k} flags differ between repeats", flush=True)
    adv_o, rob_o, unconf = flags["ours"]
    adv_t, rob_t = flags["theirs"]
    assert torch.equal(predict(clf, adv_o) == y, rob_o), "our flags disagree with our adversarial images"
    assert (adv_o - x).abs().max() <= eps + 1e-6 and (adv_t - x).abs().max() <= eps + 1e-6
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = [t / o for t, o in zip(times["theirs"], times["ours"])]
    row = {
        "model": label,
        "eps": eps_str(eps),
        "attack": attack,
        "n": len(y),
        "steps": steps,
        "batch_size": bs,
        "ours_img_s": round(len(y) / med["ours"], 2),
        "theirs_img_s": round(len(y) / med["theirs"], 2),
        "ours_s": [round(v, 2) for v in times["ours"]],
        "theirs_s": [round(v, 2) for v in times["theirs"]],
        "throughput_ratio": round(statistics.median(ratios), 2),
        "ratio_min": round(min(ratios), 2),
        "ratio_max": round(max(ratios), 2),
        "ours_robust_acc": rob_o.float().mean().item(),
        "theirs_robust_acc": rob_t.float().mean().item(),
        "both_robust": int((rob_o & rob_t).sum()),
        "only_ours_robust": int((rob_o & ~rob_t).sum()),
        "only_theirs_robust": int((~rob_o & rob_t).sum()),
        "unconfirmed": int(unconf),
        "ours_peak_mib": round(peaks["ours"], 1),
        "theirs_peak_mib": round(peaks["theirs"], 1),
    }
    if "exact" in flags:
        row.update(
            exact_robust_acc=flags["exact"][1].float().mean().item(),
            exact_img_s=round(len(y) / med["exact"], 2),
            exact_peak_mib=round(peaks["exact"], 1),
            fast_vs_exact_ratio=round(statistics.median(e / o for e, o in zip(times["exact"], times["ours"])), 2),
        )
    row["stronger_ok"] = row["ours_robust_acc"] <= row["theirs_robust_acc"] + 0.005
    row["faster_ok"] = row["throughput_ratio"] >= 1.5
    print(
        f"{label:10} eps {row['eps']:>7} {attack:8} robust acc ours {row['ours_robust_acc']:.4f} theirs "
        f"{row['theirs_robust_acc']:.4f}"
        + (f" exact {row['exact_robust_acc']:.4f}" if "exact" in flags else "")
        + f" | img/s ours {row['ours_img_s']:.1f} theirs {row['theirs_img_s']:.1f} "
        f"ratio {row['throughput_ratio']:.2f}x "
        f"[{row['ratio_min']:.2f}, {row['ratio_max']:.2f}] | peak MiB ours {row['ours_peak_mib']:.0f} theirs "
        f"{row['theirs_peak_mib']:.0f}",
        flush=True,
    )
    return row


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mini-base")
    p.add_argument("--dataset", default="mini/color")
    p.add_argument("--data-root", default=None)
    p.add_argument("--n", type=int, default=256, help="test images (seeded subset)")
    p.add_argument("--eps", action="append", default=None, help="budgets (repeatable; default 8/255 and 16/255)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--restarts", type=int, default=1)
    p.add_argument("--n-target-classes", type=int, default=9)
    p.add_argument("--attacks", default="apgd-ce,apgd-t")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats of each pair (medians reported)")
    p.add_argument("--exact", action="store_true", help="also run ours on the model itself (fast=False)")
    p.add_argument("--vit", default="ViT-B-32", help="random-weight model of the second block ('' to skip)")
    p.add_argument("--no-vit", dest="vit", action="store_const", const="")
    p.add_argument("--vit-n", type=int, default=32)
    p.add_argument("--vit-steps", type=int, default=10)
    p.add_argument("--vit-eps", default="8/255")
    p.add_argument("--vit-repeats", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: robustclip.core.choose_threads)")
    args = p.parse_args(argv)
    import torchattacks
    from robustclip.core import parse_eps, get_device, choose_threads

    dev = get_device(args.device)
    torch.set_num_threads(choose_threads(args.threads))
    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    clf, x, y, task = setup(args.model, args.dataset, args.n, args.seed, dev, args.data_root)
    clean = predict(clf, x) == y
    print(
        f"{args.model} on {task}: n={len(y)}, classes={clf.n_classes}, clean acc {clean.float().mean():.4f}, "
        f"device {dev}, "
        f"torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rows = [
        compare(
            args.model, clf, x, y, eps=parse_eps(e), attack=a, args=args, dev=dev, steps=args.steps, bs=args.batch_size
        )
        for e in (args.eps or ["8/255", "16/255"])
        for a in attacks
    ]
    vit = None
    if args.vit:
        vclf, vx, vy, _ = setup(args.vit, args.dataset, args.vit_n, args.seed, dev, args.data_root)
        vclean = predict(vclf, vx, 32) == vy
        print(
            f"random {args.vit}: n={len(vy)}, clean acc {vclean.float().mean():.4f}, {args.vit_steps} iterations",
            flush=True,
        )
        vargs = argparse.Namespace(**{**vars(args), "repeats": args.vit_repeats})
        vit = [
            compare(
                f"{args.vit} (random)",
                vclf,
                vx,
                vy,
                eps=parse_eps(args.vit_eps),
                attack=a,
                args=vargs,
                dev=dev,
                steps=args.vit_steps,
                bs=args.vit_n,
            )
            for a in attacks
        ]
        rows += vit
    mini_rows = [r for r in rows if r["model"] == args.model]
    out = {
        "benchmark": "attacks",
        "model": args.model,
        "dataset": task,
        "n": len(y),
        "classes": clf.n_classes,
        "clean_acc": clean.float().mean().item(),
        "steps": args.steps,
        "restarts": args.restarts,
        "targets": min(args.n_target_classes, clf.n_classes - 1),
        "repeats": args.repeats,
        "batch_size": args.batch_size,
        "device": str(dev),
        "torch_threads": torch.get_num_threads(),
        "loadavg_end": round(os.getloadavg()[0], 2),
        "torchattacks": torchattacks.__version__,
        "rows": rows,
        "all_targets_met": all(r["stronger_ok"] and r["faster_ok"] for r in mini_rows),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
