"""Per-iteration cost of APGD-CE, APGD-T and a FARE step on real-size towers, against the floor of the same tower.

floor = one forward and backward (to the input) of the zero-shot classifier at the same batch, timed interleaved
with the attack in the same process. APGD-CE's per-iteration time is its run time / iterations; APGD-T's is its run
time / (iterations x targets), its target copies running side by side. The budget is tiny (1e-4) so that no point
breaks and every iteration attacks the whole batch (an attack that stops early would look cheaper than it is). The
FARE step is benchmarks/train_step.py's (`--models ViT-B-32,ViT-L-14`). Random weights (no download); each tower in
its own process (its peak RSS is that tower's). Medians over --repeats.

    python benchmarks/towers.py                         # ViT-B-32 batch 8, ViT-L-14 batch 2, CPU
    python benchmarks/towers.py --towers ViT-L-14:4 --steps 4
Prints a table, then one line of JSON (`targets_met`: APGD within --target x floor).
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

    def apgd(loss: str) -> float:
        kw = dict(loss="dlr-t", n_target_classes=targets) if loss == "t" else dict(loss="ce")
        a = APGD(clf, threat=threat, steps=steps, restarts=1, seed=0, **kw)
        t0 = time.perf_counter()
        out = a.run(x, y)
        dt = time.perf_counter() - t0
        assert not bool(out.fooled.any()), "a point broke at eps 1e-4: the per-iteration time would be too low"
        return dt / (steps * (targets if loss == "t" else 1))

    floor()  # warm-up (allocator, kernels)
    f, ce, t = [], [], []
    for _ in range(repeats):
        f.append(statistics.median(floor() for _ in range(3)))
        ce.append(apgd("ce"))
        t.append(apgd("t"))
    fl = statistics.median(f)
    return {
        "tower": tower,
        "batch": batch,
        "steps": steps,
        "targets": targets,
        "floor_s": round(fl, 4),
        "apgd_ce_iter_s": round(statistics.median(ce), 4),
        "apgd_t_iter_s": round(statistics.median(t), 4),
        "apgd_ce_ratio": round(statistics.median(ce) / fl, 3),
        "apgd_t_ratio": round(statistics.median(t) / fl, 3),
        "peak_rss_gb": round(rss_peak() / 2**20, 2),
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--towers", default="ViT-B-32:8,ViT-L-14:2", help="TOWER:BATCH, comma-separated")
    p.add_argument("--steps", type=int, default=5, help="APGD iterations")
    p.add_argument("--targets", type=int, default=3, help="APGD-T target classes")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--target", type=float, default=1.2, help="per-iteration time at most this x the floor")
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
            f"{x['tower']:<10} batch {x['batch']:<3} floor {x['floor_s']:.4f}s  APGD-CE {x['apgd_ce_iter_s']:.4f}s/it "
            f"({x['apgd_ce_ratio']:.2f}x)  APGD-T {x['apgd_t_iter_s']:.4f}s/it ({x['apgd_t_ratio']:.2f}x)  "
            f"peak {x['peak_rss_gb']:.2f} GB",
            flush=True,
        )
    met = all(r["apgd_ce_ratio"] <= a.target and r["apgd_t_ratio"] <= a.target for r in rows)
    print(json.dumps({"benchmark": "towers", "target_ratio": a.target, "targets_met": met, "results": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
