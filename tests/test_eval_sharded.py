"""Sharded evaluation under torchrun: 2 gloo processes on CPU split the batches, resume their own parts, and rank 0
writes the single-process result."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustclip.eval.zeroshot import eval_zeroshot

# mini-base on 24 digits, 4 batches of 6, APGD-CE with 1 restart and 5 iterations: seconds per process
ARGS = dict(n_samples=24, batch_size=6, attack="apgd-ce", eps="8/255", iterations=5, restarts=1, seed=0)
CLI = [
    "--model",
    "mini-base",
    "--dataset",
    "mini/digit",
    "--device",
    "cpu",
    "--n-samples",
    "24",
    "--batch-size",
    "6",
    "--attack",
    "apgd-ce",
    "--eps",
    "8/255",
    "--iterations",
    "5",
    "--restarts",
    "1",
    "--seed",
    "0",
]


def _torchrun(*args, timeout=240):
    "Launch 2 CPU processes with torchrun (gloo, one thread each, a free port); fail with their output."
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "ROBUSTCLIP_PROGRESS": "0"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def _lines(side):
    "A sidecar's batch lines (the per-sample flags), without its header."
    return [json.loads(l) for l in Path(side).read_text().splitlines()[1:]]


def _same_result(a, b):
    "Equal records up to timings, provenance and which rank's sanity checks fired."
    skip = {"seconds", "created", "resumed_batches", "processes", "versions", "samples"}
    strip = lambda r: {k: ({**v, "warnings": None} if k == "attack" else v) for k, v in r.items() if k not in skip}
    assert strip(a) == strip(b)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    "The single-process reference, one thread as each torchrun process has."
    d, n = tmp_path_factory.mktemp("single"), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rec = eval_zeroshot("mini-base", "mini/digit", device="cpu", output=d / "r.json", **ARGS)
    finally:
        torch.set_num_threads(n)
    return rec, _lines(d / "r.samples.jsonl")


def test_torchrun_cli_equals_single_process(single, tmp_path):
    "`torchrun --nproc-per-node 2 -m robustclip eval zeroshot`: one result, the same flags and metrics, no parts left."
    out = tmp_path / "r.json"
    _torchrun("-m", "robustclip", "eval", "zeroshot", *CLI, "--output", str(out))
    rec = json.loads(out.read_text())
    assert rec["processes"] == 2 and rec["resumed_batches"] == 0
    assert _lines(tmp_path / "r.samples.jsonl") == single[1]  # every sample's clean and robust flags
    assert rec["metrics"] == single[0]["metrics"]
    _same_result(rec, single[0])
    assert sorted(os.listdir(tmp_path)) == ["r.json", "r.samples.jsonl"]


def test_each_rank_resumes_its_part(single, tmp_path):
    "Cut short after one batch per rank, each part holds its batch; the rerun computes only the other two (one launch)."
    out = tmp_path / "r.json"
    _torchrun(__file__, str(out))
    rec = json.loads(out.read_text())
    assert rec["resumed_batches"] == 2 and rec["processes"] == 2
    assert _lines(tmp_path / "r.samples.jsonl") == single[1]
    _same_result(rec, single[0])
    assert sorted(os.listdir(tmp_path)) == ["r.json", "r.samples.jsonl"]


if __name__ == "__main__":  # the torchrun worker of the resume test: `torchrun ... tests/test_eval_sharded.py OUTPUT`
    from robustclip.distributed import init_distributed, cleanup_distributed, barrier

    info, out = init_distributed("cpu"), Path(sys.argv[1])  # the caller's process group: run_eval leaves it running
    try:
        part = eval_zeroshot("mini-base", "mini/digit", device="cpu", output=out, max_batches=1, **ARGS)
        assert part["complete"] is False and part["batches_done"] == 2, part
        barrier()
        assert sorted(os.listdir(out.parent)) == ["r.samples.rank0.jsonl", "r.samples.rank1.jsonl"], os.listdir(
            out.parent
        )
        assert [l["batch"] for l in _lines(out.parent / f"r.samples.rank{info.rank}.jsonl")] == [info.rank]
        barrier()
        rec = eval_zeroshot("mini-base", "mini/digit", device="cpu", output=out, **ARGS)
        assert rec["resumed_batches"] == 2 and rec["processes"] == 2, rec
    finally:
        cleanup_distributed()
