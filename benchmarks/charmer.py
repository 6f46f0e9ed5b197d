"""Charmer throughput and success rate, and LEAF's training attack against its floor, measured in the same run.

Charmer (classification objective, n = 20 positions, early stop, misclassified texts skipped) on `--n-samples` texts
of `--dataset` for k = 1 and 2: sentences per second (all texts, skipped ones included) and attack success rate
(flipped / correctly classified), with the mean number of texts scored per sentence.

LEAF's training attack (k = 1, rho = 50, constrained, B = `--batch` captions) per batch, against its floor measured
interleaved with it: 2·k·rho text-encoder forwards of the batch (B·rho candidates per forward, tokens precomputed,
the same padding-trimmed encoder the attack uses).
The ratio shows what candidate generation, tokenisation and the word constraint add on top of the forwards.

    python benchmarks/charmer.py                          # mini-base on mini/text (CPU)
    python benchmarks/charmer.py --model RC-Tiny-ViT --dataset synthetic   # no mini world needed
    python benchmarks/charmer.py --device cuda --n-samples 1000
Prints a table, then one line of JSON.
"""

from __future__ import annotations
import argparse
import json
import os
import statistics
import sys
import time


def _sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def _synthetic():
    from robustclip.data.core import TextClassificationTask

    colours, digits = (
        ["red", "green", "blue", "yellow"],
        ["zero", "one", "two", "three", "four", "five", "six", "seven"],
    )
    texts = [f"a {colours[i % 4]} digit {digits[i % 8]} on a plain background" for i in range(256)]
    return TextClassificationTask("synthetic", texts, [i % 4 for i in range(256)], colours, colours)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mini-base")
    p.add_argument("--dataset", default="mini/text", help="a text classification task, or 'synthetic'")
    p.add_argument("--label-encoder", default="text", choices=["image", "text"])
    p.add_argument("--n-samples", type=int, default=64)
    p.add_argument("--n-positions", type=int, default=20)
    p.add_argument("--batch", type=int, default=32, help="LEAF: captions per training batch")
    p.add_argument("--rho", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5, help="LEAF: timed batches (medians)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    os.environ.setdefault("ROBUSTCLIP_PROGRESS", "0")
    import torch
    from robustclip.core import get_device
    from robustclip.models import load_clip
    from robustclip.data.core import get_dataset
    from robustclip.zeroshot import subset_indices
    from robustclip.eval.text import class_embeddings, predict_texts
    from robustclip.attacks.charmer import charmer, margin_objective, embedding_objective
    from robustclip.models import encode_tokens
    from robustclip.attacks.leaf import leaf_attack, WordConstraint

    if a.threads:
        torch.set_num_threads(a.threads)
    dev = get_device(a.device)
    torch.manual_seed(0)
    model = load_clip(a.model, device=dev)
    task = _synthetic() if a.dataset == "synthetic" else get_dataset(a.dataset)
    idx = subset_indices(len(task), a.n_samples, 0)
    texts, labels = [task.texts[i] for i in idx], [task.labels[i] for i in idx]
    W = class_embeddings(model, task, a.label_encoder)
    pred, _ = predict_texts(model, texts, W, labels)
    correct = pred == torch.tensor(labels)
    res = {
        "model": a.model,
        "dataset": task.name,
        "device": str(dev),
        "n_samples": len(texts),
        "clean_acc": correct.float().mean().item(),
        "threads": torch.get_num_threads(),
    }
    print(
        f"{a.model} on {task.name} ({len(texts)} texts, {dev}, {torch.get_num_threads()} threads): "
        f"clean acc {res['clean_acc']:.3f}"
    )
    print(f"{'attack':<22}{'sent/s':>9}{'success':>9}{'robust acc':>12}{'texts scored/sent':>19}")
    for k in (1, 2):
        _sync(dev)
        t = time.perf_counter()
        r = charmer(
            texts,
            margin_objective(model, W, labels),
            k=k,
            n_positions=a.n_positions,
            threshold=0.0,
            tokenizer=model.tokenizer,
            batch_size=512,
        )
        _sync(dev)
        dt = time.perf_counter() - t
        flipped = (r.success & correct).sum().item()
        sr = flipped / max(1, correct.sum().item())
        res[f"charmer_k{k}_sent_per_s"] = round(len(texts) / dt, 3)
        res[f"charmer_k{k}_success_rate"] = round(sr, 4)
        res[f"charmer_k{k}_robust_acc"] = round((correct & ~r.success).float().mean().item(), 4)
        res[f"charmer_k{k}_queries_per_sent"] = round(sum(r.queries) / len(texts), 1)
        print(
            f"{'charmer k=' + str(k) + ' n=' + str(a.n_positions):<22}{len(texts) / dt:>9.2f}{sr:>9.3f}"
            f"{res[f'charmer_k{k}_robust_acc']:>12.3f}{res[f'charmer_k{k}_queries_per_sent']:>19.1f}"
        )

    # LEAF: one training batch of captions, k = 1, rho = 50, constrained; floor = 2·k·rho forwards of the batch
    caps = [task.texts[i % len(task)] for i in subset_indices(len(task), None, 1)][: a.batch]
    caps = (caps * (a.batch // max(1, len(caps)) + 1))[: a.batch]
    k, rho, wc = 1, a.rho, WordConstraint()
    with torch.no_grad():
        anchors = model.encode_text(caps)
    toks = model.tokenize([c for c in caps for _ in range(rho)])

    def floor():
        _sync(dev)
        t = time.perf_counter()
        with torch.no_grad():
            for _ in range(2 * k):
                encode_tokens(model, toks)  # the attack's own encoder (padding trimmed)
        _sync(dev)
        return time.perf_counter() - t

    def attack(seed):
        _sync(dev)
        t = time.perf_counter()
        leaf_attack(
            caps,
            embedding_objective(model, anchors, "l2"),
            k=k,
            rho=rho,
            constraint=wc,
            generator=torch.Generator().manual_seed(seed),
            tokenizer=model.tokenizer,
        )
        _sync(dev)
        return time.perf_counter() - t

    attack(0)
    floor()  # warm-up (BPE cache, allocator)
    ta, tf = [], []
    for s in range(a.repeats):
        ta.append(attack(s + 1))
        tf.append(floor())
    ta, tf = statistics.median(ta), statistics.median(tf)
    res.update(
        {
            "leaf_batch": a.batch,
            "leaf_rho": rho,
            "leaf_k": k,
            "leaf_s_per_batch": round(ta, 4),
            "leaf_floor_s": round(tf, 4),
            "leaf_ratio": round(ta / tf, 3),
        }
    )
    print(
        f"LEAF attack (B={a.batch}, k={k}, rho={rho}, constrained): {ta * 1000:.1f} ms/batch; floor "
        f"(2·k·rho = {2 * k * rho} forwards of the batch) {tf * 1000:.1f} ms; ratio {ta / tf:.2f}"
    )
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
