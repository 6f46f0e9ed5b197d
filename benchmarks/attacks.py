"""Our APGD against torchattacks' port of AutoAttack's APGD, on the same model, images and budget.

    python benchmarks/attacks.py                      # mini-base, 512 mini/color test images, eps 4/255 + a mid-range eps
    python benchmarks/attacks.py --eps 4/255 --eps 1/255 --n 512 --steps 100 --batch-size 256

For each eps: robustclip's APGD-CE (100 iterations, 1 restart) against `torchattacks.APGD(loss='ce')` with the same
iterations, restarts and eps, and robustclip's targeted APGD (APGD-T, 9 targets, 1 restart each) against
`torchattacks.APGDT` (n_classes = the task's classes). Reported: robust accuracy side by side (theirs recomputed from
the images they return, ours from our flags, checked against our images), wall time, throughput ratio (ours/theirs)
and peak memory (CUDA: max allocated; CPU: the process's peak resident set above the baseline, via
/proc/self/clear_refs). Targets: our robust accuracy <= theirs + 0.5 points, throughput >= 1.3x theirs.
The last line printed is one JSON object with every figure.
"""
from __future__ import annotations
import argparse, json, os, re, sys, time, warnings
from pathlib import Path

import torch


def rss_reset() -> int:
    "Reset the peak-RSS counter (Linux) and return the current RSS in kB (0 where unsupported)."
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))
    except OSError: return 0


def rss_peak() -> int:
    try: return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))
    except OSError: return 0


def measure(fn, device: torch.device):
    "Run fn(); return (its result, seconds, peak memory in MiB above the start)."
    if device.type == "cuda":
        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
    else: base = rss_reset()
    t0 = time.perf_counter(); out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(); peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else: peak = max(rss_peak() - base, 0) / 1024
    return out, time.perf_counter() - t0, peak


def batched(fn, x, y, bs):
    return torch.cat([fn(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mini-base"); p.add_argument("--dataset", default="mini/color")
    p.add_argument("--data-root", default=None)
    p.add_argument("--n", type=int, default=512, help="test images (seeded subset)")
    p.add_argument("--eps", action="append", default=None, help="budgets (repeatable); 'auto' picks a mid-range one")
    p.add_argument("--steps", type=int, default=100); p.add_argument("--restarts", type=int, default=1)
    p.add_argument("--n-target-classes", type=int, default=9)
    p.add_argument("--batch-size", type=int, default=256); p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    import torchattacks
    from robustclip.core import parse_eps, eps_str, get_device, seed_everything
    from robustclip.models import load_clip
    from robustclip.data.core import get_dataset
    from robustclip.zeroshot import build_classifier, task_inputs, subset_indices
    from robustclip.attacks.apgd import APGD

    dev = get_device(args.device); seed_everything(args.seed)
    model = load_clip(args.model, device=dev); task = get_dataset(args.dataset, root=args.data_root)
    clf = build_classifier(model, task).to(dev).eval()
    for q in clf.parameters(): q.requires_grad_(False)       # the same for both: only input gradients are needed
    data = task_inputs(task, model, subset_indices(len(task), args.n, args.seed))
    x = torch.stack([data[i][0] for i in range(len(data))]); y = torch.tensor([int(data[i][1]) for i in range(len(data))])
    x, y = x.to(dev), y.to(dev)
    C = clf.n_classes; n_t = min(args.n_target_classes, C - 1)
    with torch.no_grad(): clean = torch.cat([clf(x[i:i + 256]).argmax(1) for i in range(0, len(x), 256)]) == y
    print(f"{args.model} on {task.name}: n={len(y)}, classes={C}, clean acc {clean.float().mean():.4f}, device {dev}, "
          f"torch threads {torch.get_num_threads()}", flush=True)

    eps_list = args.eps or ["4/255", "auto"]
    if "auto" in eps_list:   # the budget where a quick APGD-CE leaves about half the clean accuracy
        grid = [k / 255 for k in (0.25, 0.5, 0.75, 1, 1.5, 2, 3)]
        quick = {e: (~APGD(clf, eps=e, steps=20, restarts=1).run(x[:128], y[:128]).fooled).float().mean().item() for e in grid}
        half = clean[:128].float().mean().item() / 2
        mid = min(grid, key=lambda e: abs(quick[e] - half))
        print("auto eps: quick robust acc " + ", ".join(f"{eps_str(e)}: {a:.2f}" for e, a in quick.items())
              + f" -> {eps_str(mid)}", flush=True)
        eps_list = [eps_str(mid) if e == "auto" else e for e in eps_list]

    rows = []
    for e_s in eps_list:
        eps = parse_eps(e_s)
        pairs = [
            ("apgd-ce",
             lambda: APGD(clf, eps=eps, loss="ce", steps=args.steps, restarts=args.restarts, seed=args.seed),
             lambda: torchattacks.APGD(clf, norm="Linf", eps=eps, steps=args.steps, n_restarts=args.restarts,
                                       loss="ce", seed=args.seed)),
            ("apgd-t",
             lambda: APGD(clf, eps=eps, loss="dlr-t", steps=args.steps, restarts=args.restarts, n_target_classes=n_t,
                          seed=args.seed),
             lambda: torchattacks.APGDT(clf, norm="Linf", eps=eps, steps=args.steps, n_restarts=args.restarts,
                                        n_classes=n_t + 1, seed=args.seed)),
        ]
        for name, ours_f, theirs_f in pairs:
            theirs = theirs_f()
            adv_t, t_s, t_mb = measure(lambda: batched(theirs, x, y, args.batch_size), dev)
            with torch.no_grad(): rob_t = torch.cat([clf(adv_t[i:i + 256]).argmax(1) for i in range(0, len(x), 256)]) == y
            ours = ours_f()
            def run_ours():
                outs = [ours.run(x[i:i + args.batch_size], y[i:i + args.batch_size]) for i in range(0, len(x), args.batch_size)]
                return torch.cat([o.x_adv for o in outs]), ~torch.cat([o.fooled for o in outs])
            (adv_o, rob_o), o_s, o_mb = measure(run_ours, dev)
            with torch.no_grad(): check = torch.cat([clf(adv_o[i:i + 256]).argmax(1) for i in range(0, len(x), 256)]) == y
            assert torch.equal(check, rob_o), "our flags disagree with our adversarial images"
            assert (adv_o - x).abs().max() <= eps + 1e-6 and (adv_t - x).abs().max() <= eps + 1e-6
            row = {"eps": eps_str(eps), "attack": name, "ours_robust_acc": rob_o.float().mean().item(),
                   "theirs_robust_acc": rob_t.float().mean().item(), "ours_s": round(o_s, 2), "theirs_s": round(t_s, 2),
                   "throughput_ratio": round(t_s / o_s, 2), "ours_peak_mib": round(o_mb, 1), "theirs_peak_mib": round(t_mb, 1),
                   "both_robust": int((rob_o & rob_t).sum()), "only_ours_robust": int((rob_o & ~rob_t).sum()),
                   "only_theirs_robust": int((~rob_o & rob_t).sum())}
            row["stronger_ok"] = row["ours_robust_acc"] <= row["theirs_robust_acc"] + 0.005
            row["faster_ok"] = row["throughput_ratio"] >= 1.3
            rows.append(row)
            print(f"eps {row['eps']:>7} {name:8} robust acc ours {row['ours_robust_acc']:.4f} theirs {row['theirs_robust_acc']:.4f} | "
                  f"time ours {o_s:7.1f}s theirs {t_s:7.1f}s ratio {row['throughput_ratio']:.2f}x | "
                  f"peak MiB ours {o_mb:.0f} theirs {t_mb:.0f}", flush=True)
    out = {"benchmark": "attacks", "model": args.model, "dataset": task.name, "n": len(y), "classes": C,
           "clean_acc": clean.float().mean().item(), "steps": args.steps, "restarts": args.restarts, "targets": n_t,
           "batch_size": args.batch_size, "device": str(dev), "torch_threads": torch.get_num_threads(),
           "torchattacks": torchattacks.__version__, "rows": rows,
           "all_targets_met": all(r["stronger_ok"] and r["faster_ok"] for r in rows)}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
