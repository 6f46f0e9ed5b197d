"LEAF: the training attack's cost, bound and constraint; the pluggable word list; the trainer method and its resume."

import hashlib
import json
from pathlib import Path

import Levenshtein
import pytest
import torch
from hypothesis import given, settings, strategies as st

from robustclip.core import RobustClipError
from robustclip.attacks.charmer import ASCII_ALPHABET, embedding_objective
from robustclip.attacks.leaf import leaf_attack, WordConstraint, load_words, word_tokens, cpu_generator


def hashed(texts, owners):
    return torch.tensor(
        [int(hashlib.md5(t.encode("utf-8", "surrogatepass")).hexdigest()[:8], 16) / 2**32 for t in texts]
    )


@pytest.fixture(scope="module")
def wc():
    return WordConstraint()


def test_cost_is_two_k_rho_forwards_per_sentence():
    calls = []

    def count(texts, owners):
        calls.append(len(texts))
        return hashed(texts, owners)

    leaf_attack(
        ["a b", "a much longer sentence " * 5, ""], count, k=2, rho=9, generator=torch.Generator().manual_seed(0)
    )
    assert calls == [3 * 9] * 4  # 2 stages x 2 rounds, each B*rho candidates in one batch
    calls.clear()
    leaf_attack(["a b", "c d"], count, k=1, rho=9, batch_size=4)
    assert sum(calls) == 2 * 2 * 9 and max(calls) <= 4


@settings(max_examples=40, deadline=None)
@given(
    texts=st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=15), min_size=1, max_size=3),
    k=st.integers(0, 3),
    rho=st.integers(1, 120),
    seed=st.integers(0, 2**31),
)
def test_outputs_stay_within_k(texts, k, rho, seed):
    out = leaf_attack(texts, hashed, k=k, rho=rho, generator=torch.Generator().manual_seed(seed))
    assert all(Levenshtein.distance(a, t) <= k for a, t in zip(out.texts, texts))


def test_constraint_every_accepted_edit_destroys_a_word(wc):
    caps = ["a dog runs on the beach", "the red bear sits in green grass", "two cats", "", "🙂 emoji only"]
    out = leaf_attack(caps, hashed, k=2, rho=30, constraint=wc, generator=torch.Generator().manual_seed(3))
    for a, c in zip(out.texts, caps):
        assert Levenshtein.distance(a, c) <= 2
        assert a == c or wc.count(a) < wc.count(c)
    assert out.texts[3] == "" and sum(a != c for a, c in zip(out.texts, caps)) >= 3


def test_seeded_and_generator_kinds():
    caps = ["a small caption", "another caption here"]
    a = leaf_attack(caps, hashed, k=1, rho=10, generator=torch.Generator().manual_seed(5)).texts
    b = leaf_attack(caps, hashed, k=1, rho=10, generator=torch.Generator().manual_seed(5)).texts
    assert a == b
    assert cpu_generator(None).device.type == "cpu"
    with pytest.raises(RobustClipError, match="rho"):
        leaf_attack(caps, hashed, rho=0)
    with pytest.raises(RobustClipError, match="k must"):
        leaf_attack(caps, hashed, k=-2)


def test_alphabet_is_leafs_96_symbols():
    assert len(ASCII_ALPHABET) == 96 and "" in ASCII_ALPHABET and " " in ASCII_ALPHABET and "~" in ASCII_ALPHABET


def test_word_list_is_web2_and_pluggable(tmp_path, wc):
    is_word = load_words("web2")
    assert is_word("bear") and is_word("beer") and not is_word("beaq") and not is_word("paris")  # lower-case lookup
    f = tmp_path / "words.txt"
    f.write_text("cat\ndog\n")
    for src in (f, str(f), {"cat", "dog"}, lambda w: w in ("cat", "dog")):
        c = WordConstraint(src)
        assert c.count("A cat and a dog and a cat.") == 2
        assert c("a cat and a dog", ["a cxt and a dog", "a cat and a dig", "a cat and a dogs"]) == [True, True, True]
        assert c("a cat", ["a cot"]) == [True] and c("a cot", ["a cat"]) == [False]
    with pytest.raises(RobustClipError, match="one word per line"):
        load_words(tmp_path / "missing.txt")
    assert "web2" in repr(wc)


@pytest.mark.parametrize(
    "text, tokens",
    [
        ("Don't stop", ["do", "n't", "stop"]),
        ("It's a state-of-the-art dog.", ["it", "'s", "a", "state-of-the-art", "dog", "."]),
        ("U.S. e-mail a/b a_b 3,5", ["u.s.", "e-mail", "a/b", "a_b", "3,5"]),
        (
            '"Quoted" (paren) 50% a&b #tag',
            ["``", "quoted", "''", "(", "paren", ")", "50", "%", "a", "&", "b", "#", "tag"],
        ),
    ],
)
def test_word_tokens_follow_nltk(text, tokens):
    got = word_tokens(text)
    norm = lambda ts: [t for t in ts if t not in ('"', "``", "''")]  # NLTK rewrites double quotes as `` ''
    assert norm(got) == norm(tokens)


def test_leaf_attack_against_a_clip(tiny, wc):
    caps = ["a red seven in the top left corner", "a small blue two", "x" * 300]
    with torch.no_grad():
        A = tiny.encode_text(caps)
    out = leaf_attack(
        caps,
        embedding_objective(tiny, A, "l2"),
        k=1,
        rho=16,
        constraint=wc,
        generator=torch.Generator().manual_seed(0),
        tokenizer=tiny.tokenizer,
    )
    assert (out.scores >= 0).all() and all(Levenshtein.distance(a, c) <= 1 for a, c in zip(out.texts, caps))
    with torch.no_grad():
        d = (tiny.encode_text(out.texts) - A).pow(2).sum(-1)
    assert torch.allclose(d, out.scores, atol=1e-4)


def _cfg(d, **kw):
    from robustclip.train.config import make_config

    base = dict(
        method="leaf",
        model="RC-Tiny-ViT",
        pretrained=None,
        dataset="captions:" + str(d / "caps.txt"),
        steps=4,
        batch_size=4,
        warmup=1,
        lr=1e-3,
        betas=[0.9, 0.98],
        threads=1,
        output_dir=str(d / "run"),
        name="leaf-test",
        save_every=2,
        check_every=-1,
        method_args={"rho": 4, "k": 1, "n_samples": 8},
    )
    return make_config({**base, **kw})


def test_leaf_trains_the_text_tower_and_resumes_bitwise(tmp_path):
    from robustclip.train.loop import train

    (tmp_path / "caps.txt").write_text(
        "\n".join(
            f"a {c} digit {d} on the left" for c in ("red", "blue", "green") for d in ("one", "two", "three", "four")
        )
    )
    full = train(_cfg(tmp_path, output_dir=str(tmp_path / "a")))
    train(_cfg(tmp_path, output_dir=str(tmp_path / "b"), stop_after=2))
    train(_cfg(tmp_path, output_dir=str(tmp_path / "b")), resume="latest")
    sa = torch.load(tmp_path / "a/checkpoints/latest.pt", weights_only=True)
    sb = torch.load(tmp_path / "b/checkpoints/latest.pt", weights_only=True)
    assert sa["step"] == sb["step"] == 4
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])  # resume changes no bit
    log = [json.loads(l) for l in (tmp_path / "a/metrics.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 4 and "edited" in log[-1] and log[-1]["loss"] >= 0
    from robustclip.models import load_clip
    from robustclip.core import seed_everything

    seed_everything(0)
    m0 = load_clip("RC-Tiny-ViT")
    m1 = load_clip(f"local-dir:{full['run_dir']}/final")
    s0, s1 = m0.model.state_dict(), m1.model.state_dict()
    assert all(torch.equal(s0[k], s1[k]) for k in s0 if k.startswith("visual."))
    assert any(not torch.equal(s0[k], s1[k]) for k in s0 if not k.startswith("visual."))


def _write_shards(d, n_shards=6, per=10):
    "Small webdataset shards: every 4th sample lacks its image, every 6th its caption."
    import io
    import tarfile

    d.mkdir(parents=True, exist_ok=True)
    for s in range(n_shards):
        with tarfile.open(d / f"{s:08d}.tar", "w") as tf:
            for i in range(per):
                key = f"{s:02d}{i:04d}"
                members = ([("txt", f"a photo number {s} {i}".encode())] if i % 6 != 5 else []) + (
                    [("jpg", b"\xff\xd8not-decoded")] if i % 4 != 3 else []
                )
                for ext, data in members:
                    ti = tarfile.TarInfo(f"{key}.{ext}")
                    ti.size = len(data)
                    tf.addfile(ti, io.BytesIO(data))
    return {f"a photo number {s} {i}" for s in range(n_shards) for i in range(per) if i % 6 != 5 and i % 4 != 3}


def test_leaf_shards_new_window_each_epoch(tmp_path):
    "Webdataset shards: each epoch is another n-sample window (shards shuffled with seed + epoch), image+caption only."
    from robustclip.data.text import epoch_captions
    from robustclip.train.leaf import EpochWindows
    from robustclip.train.distributed import GlobalBatchSampler

    valid = _write_shards(tmp_path / "shards")
    wins = [epoch_captions(tmp_path / "shards", 12, seed=1, epoch=e) for e in range(3)]
    assert all(len(w) == 12 and len(set(w)) == 12 and set(w) <= valid for w in wins)
    assert len({tuple(sorted(w)) for w in wins}) == 3  # a different window every epoch
    assert epoch_captions(tmp_path / "shards", 12, seed=1, epoch=1) == wins[1]  # a function of (seed, epoch)
    assert epoch_captions(tmp_path / "shards", 12, seed=2, epoch=0) != wins[0]
    ds = EpochWindows(tmp_path / "shards", 12, epochs=3, seed=1)
    flat = [ds[j] for b in GlobalBatchSampler(ds, 4, seed=1, steps=9) for j in b]
    assert flat == wins[0] + wins[1] + wins[2]  # the trainer walks window 0, 1, 2
    import tarfile

    with tarfile.open(tmp_path / "empty.tar", "w"):
        pass
    with pytest.raises(RobustClipError, match="no sample"):
        epoch_captions(tmp_path / "empty.tar", 3, seed=1, epoch=0)


def test_leaf_trains_on_shards_and_resumes_bitwise(tmp_path):
    "The LEAF trainer on webdataset shards: epochs of n_samples windows; a resume reads the same windows."
    from robustclip.train.loop import train

    _write_shards(tmp_path / "shards")
    kw = dict(
        dataset="captions:shards", data_root=str(tmp_path), steps=6, method_args={"rho": 4, "k": 1, "n_samples": 8}
    )
    train(_cfg(tmp_path, output_dir=str(tmp_path / "a"), **kw))
    train(_cfg(tmp_path, output_dir=str(tmp_path / "b"), stop_after=3, **kw))
    train(_cfg(tmp_path, output_dir=str(tmp_path / "b"), **kw), resume="latest")
    sa = torch.load(tmp_path / "a/checkpoints/latest.pt", weights_only=True)
    sb = torch.load(tmp_path / "b/checkpoints/latest.pt", weights_only=True)
    assert sa["step"] == sb["step"] == 6
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])


def test_leaf_config_errors(tmp_path):
    from robustclip.train.methods import get_method

    with pytest.raises(RobustClipError, match="did you mean rho"):
        get_method("leaf").parse_args({"rhoo": 3})
    from robustclip.train.config import load_config

    for f in ("leaf", "leaf-rho20", "leaf-unconstrained"):
        cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "paper" / f"{f}.yaml")
        args = get_method(cfg.method).parse_args(cfg.method_args)
        # ViT-L: LEAF's get_default_params gives (0.9, 0.98, 1e-6) only to names containing 'vit';
        # 'hf-hub:chs20/fare2-clip'
        # has none, so the authors' ViT-L runs used torch's AdamW defaults (methods.md 4.4, corrected 2026-12-01).
        assert (cfg.batch_size, cfg.betas, cfg.adam_eps, cfg.precision, args.k) == (
            128,
            [0.9, 0.999],
            1e-8,
            "amp",
            1,
        )  # amp: fp16 + GradScaler on CUDA
        assert "vit" not in cfg.model.lower()


def test_torchrun_two_processes_equal_one(tmp_path, root):
    "LEAF under torchrun (DDP, gloo): 2 processes give the weights of 1 process with 2 accumulation steps."
    import os
    import shutil
    import subprocess
    import sys
    import yaml
    from safetensors.torch import load_file

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not installed")
    (tmp_path / "caps.txt").write_text(
        "\n".join(
            f"a {c} digit {d} at the {p}"
            for c in ("red", "blue")
            for d in ("one", "two", "six", "nine")
            for p in ("top", "bottom")
        )
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            dict(
                method="leaf",
                model="RC-Tiny-ViT",
                pretrained=None,
                dataset=f"captions:{tmp_path}/caps.txt",
                steps=2,
                batch_size=8,
                warmup=1,
                lr=1e-3,
                betas=[0.9, 0.98],
                check_every=-1,
                threads=1,
                log_every=1,
                method_args={"rho": 6, "k": 1},
            )
        )
    )
    env = {
        **os.environ,
        "ROBUSTCLIP_PROGRESS": "0",
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    import socket

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]  # a free port
    two = subprocess.run(
        [
            torchrun,
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(port),
            "-m",
            "robustclip",
            "train",
            str(cfg),
            f"output_dir={tmp_path}/two",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run(
        [sys.executable, "-m", "robustclip", "train", str(cfg), f"output_dir={tmp_path}/one", "accum_steps=2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    A = load_file(str(tmp_path / "one" / "final" / "open_clip_model.safetensors"))
    B = load_file(str(tmp_path / "two" / "final" / "open_clip_model.safetensors"))
    for k in A:
        torch.testing.assert_close(A[k], B[k], rtol=1e-5, atol=1e-6)
