"""Every evaluation resumes after `kill -9` to the identical result.

For each task (zero-shot under APGD, text under Charmer, retrieval under Charmer and under APGD, embedding drift; the
LVLM under RobustVLM's ensemble, text-to-image under Charmer, PEZ inversion) a child process runs a tiny evaluation
(random RC-Tiny-ViT weights saved once; the mini LVLM and generator for the downstream ones); as soon as its sidecar
holds one finished batch, the process is killed with SIGKILL. The same evaluation is then run again (it resumes from the
sidecar) and once more from scratch into another file: metrics and sidecar content must be equal.

The child is forked from the test process (torch, open_clip and sklearn already imported: a fresh interpreter
would spend most of this file's time importing them). Both run single-threaded: a forked child cannot use the
parent's OpenMP thread pool, and one thread on both sides also keeps their floating-point sums alike. The child also
takes tqdm locks of its own: tqdm's write lock is a multiprocessing lock that a forked child shares with its parent, and
a child killed while it held it (a progress bar opening or closing) left the parent's next bar waiting forever. CI hit
this twice: a hang at the 90-min limit, then two 900-s timeouts in the retrieval cases.
"""

import multiprocessing
import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

CASES = {  # name -> (function, dataset, dataset kwargs, evaluation kwargs); each runs 3-5 batches
    "zeroshot": (
        "zeroshot",
        "mini/color",
        {"n": 64},
        dict(attack="apgd-ce", eps="8/255", iterations=20, restarts=2, n_samples=32, batch_size=8, checks=False),
    ),
    "text": (
        "text",
        "mini/text",
        {"n": 40},
        dict(attack="charmer", k=2, n_positions=4, n_samples=32, chunk=8, batch_size=256),
    ),
    "retrieval-charmer": (
        "retrieval",
        "mini/retrieval",
        {"n": 16},
        dict(attack="charmer", k=1, n_positions=3, alphabet="aeo", n_samples=7, chunk=16, batch_size=256),
    ),
    "retrieval-apgd": (
        "retrieval",
        "mini/retrieval",
        {"n": 40},
        dict(attack="apgd", eps="8/255", steps=20, n_samples=32, batch_size=8),
    ),
    "drift": ("drift", "mini/digit", {"n": 64}, dict(eps="4/255", iterations=20, n_samples=32, batch_size=8)),
    # the downstream evaluations (dataset by name): mini-llava under the ensemble, mini-t2i under Charmer, PEZ
    "vlm-ensemble": (
        "vlm",
        "mini/captions",
        None,
        dict(attack="ensemble", eps="16/255", steps=3, n_samples=12, batch_size=4),
    ),
    "t2i": ("t2i", "mini/retrieval", None, dict(k=1, n_positions=3, n_samples=9, batch_size=3, n_examples=0)),
    "inversion": ("inversion", "mini/retrieval", None, dict(steps=8, vocab="task", n_samples=9, batch_size=3)),
}


def evaluate(case: str, models: list[str], output: str) -> dict:
    "Run the evaluation `case` (models: local-dir specs of the model and the drift anchor), writing `output`."
    from robustclip.data.core import get_dataset

    kind, name, data_kw, kw = CASES[case]
    if kind == "vlm":  # mini-llava with its own tower (the tiny random towers do not fit its projector)
        from robustclip.eval.vlm import eval_vlm

        return eval_vlm("mini-llava", name, device="cpu", output=output, **kw)
    if kind == "t2i":
        from robustclip.eval.t2i import eval_t2i

        return eval_t2i("mini-t2i", name, device="cpu", output=output, **kw)
    if kind == "inversion":
        from robustclip.eval.inversion import eval_inversion

        return eval_inversion(models[0], name, device="cpu", output=output, **kw)
    task = get_dataset(name, **data_kw)
    if kind == "zeroshot":
        from robustclip.eval.zeroshot import eval_zeroshot

        return eval_zeroshot(models[0], task, device="cpu", output=output, **kw)
    if kind == "text":
        from robustclip.eval.text import eval_text

        return eval_text(models[0], task, device="cpu", output=output, **kw)
    if kind == "retrieval":
        from robustclip.eval.retrieval import eval_retrieval

        return eval_retrieval(models[0], task, device="cpu", output=output, **kw)
    from robustclip.eval.drift import eval_drift

    return eval_drift(models[0], models[1], task, device="cpu", output=output, **kw)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    "One torch thread in this module (restored after)."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def models(tmp_path_factory, one_thread):
    "Two random tiny models saved once, so that every process loads the same weights."
    from robustclip.models import load_clip, save_clip

    out = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        out.append(
            "local-dir:" + str(save_clip(load_clip("RC-Tiny-ViT"), tmp_path_factory.mktemp("tiny") / f"m{seed}"))
        )
    return out


def _private_tqdm_locks() -> None:
    "Give this process tqdm locks that no other process holds (a forked child shares its parent's otherwise)."
    import threading
    from tqdm import std

    std.TqdmDefaultWriteLock.mp_lock = None  # no cross-process lock: this child draws no bars beside its parent's
    std.TqdmDefaultWriteLock.th_lock = threading.RLock()  # not one another thread held at the fork
    todo = [std.tqdm]
    while todo:  # tqdm.auto's class (and any other) may keep its own `_lock`
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls is std.tqdm or "_lock" in vars(cls):
            cls.set_lock(std.TqdmDefaultWriteLock())


def _child(target, *args) -> None:
    "The forked child's body: `target(*args)` with tqdm locks of its own."
    _private_tqdm_locks()
    target(*args)


def _fork(target, *args) -> multiprocessing.Process:
    "Start `target(*args)` in a forked child that can be SIGKILLed at any point without leaving a lock held."
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(target, *args))
    proc.start()
    return proc


def _hold_tqdm_lock(flag: str) -> None:
    "Take tqdm's write lock, say so in `flag`, and wait to be killed."
    from tqdm.auto import tqdm

    tqdm.get_lock().acquire()
    Path(flag).touch()
    time.sleep(120)


def test_a_child_killed_holding_the_progress_lock_leaves_the_parent_free(tmp_path):
    "The fork used below: SIGKILL a child inside tqdm's lock; this process still takes the lock at once."
    from tqdm import std
    from tqdm.auto import tqdm

    tqdm.get_lock()  # the parent's locks exist before the fork, as in a test process that drew a bar
    proc = _fork(_hold_tqdm_lock, str(tmp_path / "held"))
    t0 = time.time()
    while not (tmp_path / "held").exists() and time.time() - t0 < 60:
        time.sleep(0.01)
    assert (tmp_path / "held").exists(), "the child never took the lock"
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(60)
    lock = std.TqdmDefaultWriteLock.mp_lock
    free = lock is None or lock.acquire(timeout=5)
    if free and lock is not None:
        lock.release()
    if not free:
        _private_tqdm_locks()  # so the rest of this worker's tests do not hang on it
    assert free, "the killed child left tqdm's multiprocessing lock held: this process's next progress bar would hang"


def _kill_after_first_batch(case: str, models: list[str], out: Path) -> int:
    "Start `case` in a child process, SIGKILL it once its sidecar has a finished batch; the batches it left."
    from robustclip.eval.sidecar import sidecar_path

    side = sidecar_path(out)
    proc = _fork(evaluate, case, models, str(out))
    t0 = time.time()
    while proc.is_alive() and time.time() - t0 < 120:
        if side.exists() and len(side.read_text().splitlines()) >= 2:
            break  # header + one batch
        time.sleep(0.002)
    assert proc.is_alive(), f"{case} ended before it could be killed (exit code {proc.exitcode})"
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL and not out.exists()
    return len(side.read_text().splitlines()) - 1


@pytest.mark.parametrize("case", list(CASES))
def test_sigkill_then_rerun_equals_uninterrupted(case, models, tmp_path):
    from robustclip.eval.sidecar import sidecar_path

    out = tmp_path / "r.json"
    n_before = _kill_after_first_batch(case, models, out)
    resumed = evaluate(case, models, str(out))
    n_batches = len(sidecar_path(out).read_text().splitlines()) - 1
    assert 1 <= n_before < n_batches and resumed["resumed_batches"] == n_before
    once = evaluate(case, models, str(tmp_path / "once.json"))
    assert once["resumed_batches"] == 0
    assert resumed["metrics"] == once["metrics"] and resumed.get("attack") == once.get("attack")
    assert sidecar_path(out).read_text() == sidecar_path(tmp_path / "once.json").read_text()
    assert json.loads(out.read_text())["metrics"] == once["metrics"]


# ---------------------------------------------------------------- training: a damaged latest.pt costs one save interval
def test_truncated_latest_resumes_from_previous_to_the_same_weights(tmp_path, one_thread):
    "Cut latest.pt short after it was written: `--resume latest` warns, continues from previous.pt, ends bit-identical."
    import warnings
    from safetensors.torch import load_file
    from robustclip.data.core import write_image_folder
    from robustclip.train.config import make_config
    from robustclip.train.loop import train

    g = torch.Generator().manual_seed(0)
    data = tmp_path / "data"
    write_image_folder(data, torch.rand(32, 3, 32, 32, generator=g), [i % 4 for i in range(32)], ["a", "b", "c", "d"])
    cfg = lambda out, **kw: make_config(
        dict(
            model="RC-Tiny-ViT",
            pretrained=None,
            dataset=f"imagefolder:{data}",
            eps="4/255",
            steps=6,
            batch_size=8,
            warmup=1,
            lr=1e-3,
            attack_steps=2,
            check_every=-1,
            threads=1,
            log_every=1,
            save_every=2,
            output_dir=str(out),
            **kw,
        )
    )
    train(cfg(tmp_path / "a"))
    train(cfg(tmp_path / "b", stop_after=4))  # checkpoints at steps 2 (previous.pt) and 4 (latest.pt)
    ck = tmp_path / "b" / "checkpoints"
    assert torch.load(ck / "previous.pt", weights_only=True)["step"] == 2
    (ck / "latest.pt").write_bytes((ck / "latest.pt").read_bytes()[:4096])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        train(cfg(tmp_path / "b"), resume="latest")
    msgs = [str(x.message) for x in w if "resuming from" in str(x.message)]
    assert len(msgs) == 1 and "truncated or damaged" in msgs[0] and "checkpoints/previous.pt (step 2)" in msgs[0], msgs
    A = load_file(str(tmp_path / "a" / "final" / "open_clip_model.safetensors"))
    B = load_file(str(tmp_path / "b" / "final" / "open_clip_model.safetensors"))
    assert A.keys() == B.keys() and all(torch.equal(A[k], B[k]) for k in A)
    assert (ck / "latest.pt.broken").is_file()
    steps = [json.loads(l)["step"] for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # the rewound steps logged once


# ---------------------------------------------------------------- the reproduction: kill -9 between steps, a second run
def _smoke(runs: Path):
    from robustclip.plan.build import Context

    return Context(Path(__file__).resolve().parents[1], "mini", runs=runs, figures=runs / "fig", smoke=True)


def _reproduce(runs: str) -> None:
    from robustclip.plan.run import reproduce

    reproduce(_smoke(Path(runs)), only=REPRO_ONLY, log=lambda s: None, workers=1)


REPRO_ONLY = "zeroshot/base/mini-color,text/base/mini-text"  # four evaluation steps of mini-base (smoke settings)


def test_reproduce_killed_between_steps_then_rerun_equals_uninterrupted(tmp_path, mini_base):
    "SIGKILL once the first record is written; the rerun keeps what was done, and ends with the uninterrupted records."
    from robustclip.core import RobustClipError, exclusive
    from robustclip.plan.run import reproduce
    from robustclip.results import load_results

    killed = tmp_path / "killed"
    proc = _fork(_reproduce, str(killed))
    t0 = time.time()
    while proc.is_alive() and time.time() - t0 < 300 and not list((killed / "results").rglob("*.json")):
        time.sleep(0.01)
    assert proc.is_alive(), f"the reproduction ended before it could be killed (exit code {proc.exitcode})"
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(60)
    done_before = len(list((killed / "results").rglob("*.json")))
    status = reproduce(_smoke(killed), only=REPRO_ONLY, log=lambda s: None, workers=1)  # the lock died with it
    assert 1 <= done_before < sum(v == "ran" for v in status.values()) + done_before
    _reproduce(str(tmp_path / "once"))
    a = {Path(r["_path"]).name: r["metrics"] for r in load_results(killed / "results")}
    b = {Path(r["_path"]).name: r["metrics"] for r in load_results(tmp_path / "once" / "results")}
    assert a == b and len(a) == 4  # clean, 10/255 and 20/255 on mini/color; Charmer k=1 on mini/text
    with exclusive(tmp_path / "once"):  # a second reproduction into a folder in use is refused at once
        with pytest.raises(RobustClipError, match="being written by another robustclip process"):
            reproduce(_smoke(tmp_path / "once"), only=REPRO_ONLY, log=lambda s: None, workers=1)
