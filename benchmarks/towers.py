"""Per-iteration cost of APGD-CE and APGD-T on real-size towers, against the floor of the same tower.

floor = one forward and backward (to the input) of the zero-shot classifier at the same batch, timed interleaved
with the attacks in the same process. Each attack runs twice, with --steps and with 2 x --steps iterations, so that
its time splits into a part per iteration and a fixed part (the gradient at the start point, the clean forward before
it, the final check of the result):
- `per_iter`: the marginal cost of one more iteration, (T(2s) - T(s)) / s;
- `at_100`: the per-iteration cost of a 100-iteration run, the papers' setting: (fixed + 100 per_iter) / 100;
- `raw`: T(s) / s, the fixed part spread over --steps iterations only (what earlier versions reported).
APGD-T's times are per target and iteration, its target copies running side by side. The budget is tiny (1e-4) so that
no point breaks and every iteration attacks the whole batch (an attack that stops early would look cheaper than it
is). The FARE step is benchmarks/train_step.py's. Random weights (no download); each tower in its own process (its
peak RSS is that tower's). Medians over --repeats.

    python benchmarks/towers.py                         # ViT-B-32 batch 8, ViT-L-14 batch 2, CPU
    python benchmarks/towers.py --towers ViT-L-14:4 --steps 4
Prints a table, then one line of JSON (`targets_met`: `at_100` of both attacks within --target x floor).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def worker(tower: str, batch: int, steps: int, targets: int, repeats: int) -> dict:
    "Time the floor, APGD-CE and APGD-T on one random tower, interleaved; per-iteration medians and peak RSS."
    import torch
    from attacks import rss_peak, setup
    from robustclip.attacks.apgd import APGD
    from robustclip.core import ThreatModel

    torch.manual_seed(0)
    clf, x, _, _ = setup(tower, "mini/color", batch, 0, torch.device("cpu"))
    with torch.no_grad():
        y = clf(x).argmax(1)  # every point starts correct: the attack works on the whole batch
    threat = ThreatModel(1e-4)

    def floor() -> float:
        xi = x.clone().requires_grad_(True)
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(clf(xi), y)
        torch.autograd.grad(loss, xi)
        return time.perf_counter() - t0

    def apgd(loss: str, n: int) -> float:
        kw = dict(loss="dlr-t", n_target_classes=targets) if loss == "t" else dict(loss="ce")
        a = APGD(clf, threat=threat, steps=n, restarts=1, seed=0, **kw)
        t0 = time.perf_counter()
        out = a.run(x, y)
        dt = time.perf_counter() - t0
        assert not bool(out.fooled.any()), "a point broke at eps 1e-4: the per-iteration time would be too low"
        return dt / (targets if loss == "t" else 1)  # per target

    floor()  # warm-up (allocator, kernels)
    f, runs = [], {k: {"per_iter": [], "fixed": [], "raw": []} for k in ("ce", "t")}
    for _ in range(repeats):
        f.append(statistics.median(floor() for _ in range(3)))
        for k in ("ce", "t"):
            t1, t2 = apgd(k, steps), apgd(k, 2 * steps)
            per = (t2 - t1) / steps
            runs[k]["per_iter"].append(per)
            runs[k]["fixed"].append(t1 - steps * per)
            runs[k]["raw"].append(t1 / steps)
    fl = statistics.median(f)
    out = {"tower": tower, "batch": batch, "steps": steps, "targets": targets, "floor_s": round(fl, 4)}
    for k, r in runs.items():
        per, fixed = statistics.median(r["per_iter"]), statistics.median(r["fixed"])
        name = f"apgd_{k}"
        out[f"{name}_per_iter_s"] = round(per, 4)
        out[f"{name}_fixed_s"] = round(fixed, 4)
        out[f"{name}_per_iter_ratio"] = round(per / fl, 3)
        out[f"{name}_at_100_ratio"] = round((fixed + 100 * per) / 100 / fl, 3)
        out[f"{name}_raw_ratio"] = round(statistics.median(r["raw"]) / fl, 3)
    return {**out, "peak_rss_gb": round(rss_peak() / 2**20, 2), "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--towers", default="ViT-B-32:8,ViT-L-14:2", help="TOWER:BATCH, comma-separated")
    p.add_argument("--steps", type=int, default=4, help="APGD iterations of the shorter run (the longer: twice)")
    p.add_argument("--targets", type=int, default=3, help="APGD-T target classes")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--target", type=float, default=1.2, help="at 100 iterations: at most this x the floor")
    p.add_argument("--worker", nargs=2, metavar=("TOWER", "BATCH"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    os.environ.setdefault("ROBUSTCLIP_PROGRESS", "0")
    if a.worker:
        print(json.dumps(worker(a.worker[0], int(a.worker[1]), a.steps, a.targets, a.repeats)))
        return 0
    rows = []
    for spec in a.towers.split(","):
        tower, _, batch = spec.partition(":")
        cmd = [sys.executable, __file__, "--worker", tower, batch or "2"]
        cmd += ["--steps", str(a.steps), "--targets", str(a.targets), "--repeats", str(a.repeats)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            print(r.stderr[-2000:], file=sys.stderr)
            return 1
        x = json.loads(r.stdout.strip().splitlines()[-1])
        rows.append(x)
        print(
            f"{x['tower']:<10} batch {x['batch']:<3} floor {x['floor_s']:.4f}s  "
            + "  ".join(
                f"{n} {x[k + '_per_iter_s']:.4f}s/it (per iteration {x[k + '_per_iter_ratio']:.2f}x, "
                f"at 100 {x[k + '_at_100_ratio']:.2f}x, over {a.steps} {x[k + '_raw_ratio']:.2f}x)"
                for n, k in (("APGD-CE", "apgd_ce"), ("APGD-T", "apgd_t"))
            )
            + f"  peak {x['peak_rss_gb']:.2f} GB",
            flush=True,
        )
    met = all(r[f"{k}_at_100_ratio"] <= a.target for r in rows for k in ("apgd_ce", "apgd_t"))
    print(json.dumps({"benchmark": "towers", "target_ratio": a.target, "targets_met": met, "results": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
