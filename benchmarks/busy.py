"""A mini fine-tune on a busy machine: wall time per step with and without one competing CPU-bound process.

    python benchmarks/busy.py                          # FARE on mini-base (configs/mini/fare2.yaml), 8 timed steps
    python benchmarks/busy.py --policies 2,1,auto --steps 8 --nice 0

For each thread policy (a fixed count, or `auto` = `robustclip.core.choose_threads()`, the cores free when the run
starts) the library trainer runs `--steps` FARE steps in a fresh process (after 2 warm-up steps), once on the machine
as it is and once beside one competing process (`python -c "while True: pass"`, at `--nice`), alternating which goes
first. Reported per policy: median seconds per step alone and beside the competitor, their ratio (the goal: about
2x or less), the threads the run used, the losses of the timed steps (equal losses across policies mean the thread
count did not change the numerics), and the peak resident memory of the training process.
The machine this runs on may be shared: the load average is printed, and `alone` means without *our* competitor.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r'''
import json, os, resource, sys, time, tempfile
policy, steps, config = sys.argv[1], int(sys.argv[2]), sys.argv[3]
import torch
from robustclip.core import choose_threads
threads = choose_threads() if policy == "auto" else int(policy)
from robustclip.train.config import load_config
from robustclip.train.loop import Trainer
with tempfile.TemporaryDirectory() as d:
    cfg = load_config(config, [f"output_dir={d}", f"steps={steps + 2}", "check_every=0", f"threads={threads}",
                               f"save_every={10**6}", "workers=0"])
    tr = Trainer(cfg); it = iter(tr.loader); times, losses = [], []
    for i in range(steps + 2):
        t0 = time.perf_counter(); out = tr.train_step([next(it) for _ in range(cfg.accum_steps)])
        if i >= 2: times.append(time.perf_counter() - t0); losses.append(float(out["loss"]))
print(json.dumps({"threads": torch.get_num_threads(), "times": times, "losses": losses,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def run_child(policy: str, steps: int, config: str, competitor: bool, nice: int) -> dict:
    "One training process under `policy`, optionally beside a competitor that this function starts and stops."
    comp = None
    if competitor:
        comp = subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=lambda: os.nice(nice))
        time.sleep(0.5)
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "ROBUSTCLIP_THREADS")}
        t0 = time.perf_counter()
        p = subprocess.run(
            [sys.executable, "-c", CHILD, policy, str(steps), config], capture_output=True, text=True, env=env
        )
        wall = time.perf_counter() - t0
    finally:
        if comp is not None:
            comp.kill()
            comp.wait()
    if p.returncode != 0:
        raise RuntimeError(f"training process failed:\n{p.stderr[-3000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["process_s"] = round(wall, 1)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs/mini/fare2.yaml"))
    ap.add_argument("--steps", type=int, default=8, help="timed steps per run (after 2 warm-up steps)")
    ap.add_argument("--policies", default="2,1,auto", help="comma-separated thread counts and/or 'auto'")
    ap.add_argument("--nice", type=int, default=0, help="niceness of the competing process")
    ap.add_argument("--repeats", type=int, default=1, help="alone/beside pairs per policy")
    args = ap.parse_args(argv)
    rows = []
    print(f"cores allowed {len(os.sched_getaffinity(0))}, load average {os.getloadavg()[0]:.2f}", flush=True)
    for pol in [s.strip() for s in args.policies.split(",") if s.strip()]:
        runs = {"alone": [], "busy": []}
        for r in range(args.repeats):
            for busy in [False, True] if r % 2 == 0 else [True, False]:
                runs["busy" if busy else "alone"].append(run_child(pol, args.steps, args.config, busy, args.nice))
        med = {k: statistics.median(t for o in v for t in o["times"]) for k, v in runs.items()}
        row = {
            "policy": pol,
            "threads_alone": [o["threads"] for o in runs["alone"]],
            "threads_busy": [o["threads"] for o in runs["busy"]],
            "alone_s_per_step": round(med["alone"], 3),
            "busy_s_per_step": round(med["busy"], 3),
            "alone_spread": [
                round(min(t for o in runs["alone"] for t in o["times"]), 3),
                round(max(t for o in runs["alone"] for t in o["times"]), 3),
            ],
            "busy_spread": [
                round(min(t for o in runs["busy"] for t in o["times"]), 3),
                round(max(t for o in runs["busy"] for t in o["times"]), 3),
            ],
            "slowdown": round(med["busy"] / med["alone"], 2),
            "losses_alone": [round(v, 6) for v in runs["alone"][0]["losses"]],
            "losses_busy": [round(v, 6) for v in runs["busy"][0]["losses"]],
            "peak_rss_mib": round(max(o["peak_rss_mib"] for v in runs.values() for o in v), 1),
        }
        row["goal_ok"] = row["slowdown"] <= 2.0
        rows.append(row)
        print(
            f"threads {pol:>4} ({row['threads_alone']}/{row['threads_busy']}): "
            f"{row['alone_s_per_step']:.3f} s/step alone, "
            f"{row['busy_s_per_step']:.3f} beside a competitor -> {row['slowdown']:.2f}x | peak RSS "
            f"{row['peak_rss_mib']:.0f} MiB | load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    same = len({tuple(r["losses_alone"]) for r in rows}) == 1
    out = {
        "benchmark": "busy",
        "config": Path(args.config).name,
        "steps": args.steps,
        "nice": args.nice,
        "cores": len(os.sched_getaffinity(0)),
        "loadavg_end": round(os.getloadavg()[0], 2),
        "rows": rows,
        "losses_equal_across_policies": same,
        "best_busy_policy": min(rows, key=lambda r: r["busy_s_per_step"])["policy"] if rows else None,
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
