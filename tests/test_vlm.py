"""The LVLM interface on CPU: a tiny random LLaVA (tiny CLIP vision + tiny Llama, built here) loaded as `llava-hf:`,
agreeing with transformers' own forward and greedy generate, a tiny open_clip tower swapped in (native and
interpolated), gradients down to the pixels; the metrics against their references on fixtures; mini-llava's mechanics
in a few steps; RobustVLM's protocol (padding, prompt, decoding, precision, drops, success, draws)."""

import json
import random

import pytest
import torch

pytest.importorskip("transformers")
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from robustclip.core import RobustClipError
from robustclip.models import create_clip, model_config, save_clip
from robustclip.vlm.core import (
    SPECIAL_TOKENS,
    load_lvlm,
    lvlm_loader,
    prompt_ids,
    swap_vision,
    target_ids,
    task_prompt,
    word_tokenizer,
)
from robustclip.vlm.llava import LLAVA_SYSTEM, load_llava_hf
from robustclip.vlm import metrics

CAPTION = task_prompt("caption")


def _vit(image_size=16, width=32, seed=1, name="tiny-robust"):
    "A tiny open_clip ViT CLIP (QuickGELU, 8-px patches) to swap into the tiny LLaVA."
    cfg = {
        "embed_dim": 32,
        "quick_gelu": True,
        "vision_cfg": {"image_size": image_size, "patch_size": 8, "width": width, "layers": 2, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    return create_clip(cfg, name=name, seed=seed).eval()


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    "A tiny random LLaVA-1.5-shaped model (32-px CLIP tower, 2-layer Llama) and a word tokenizer, as a llava-hf folder."
    tok = word_tokenizer([LLAVA_SYSTEM, "USER: ASSISTANT: " + CAPTION + " a red digit seven on black"])
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            hidden_act="quick_gelu",
        ),
        text_config=LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            vocab_size=len(tok),
            max_position_embeddings=256,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        ),
        image_token_index=SPECIAL_TOKENS.index("<image>"),
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("llava") / "tiny-llava"
    LlavaForConditionalGeneration(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture()
def llava(llava_dir):
    return load_lvlm(f"llava-hf:{llava_dir}")


def _images(n=3, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_llava_agrees_with_transformers(llava):
    "Greedy answer and NLL equal LlavaForConditionalGeneration's generate and loss on the same tokens."
    x, c = _images(1), llava.lm.config
    assert (c.vision_feature_layer, c.vision_feature_select_strategy) == (-2, "default")  # LLaVA-1.5's features
    before, after = prompt_ids(llava, CAPTION)
    ids = torch.tensor([before + [c.image_token_index] * 16 + after])
    ref = llava.lm.generate(
        input_ids=ids,
        pixel_values=llava.normalize(x),
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=8,
    )
    assert llava.generate(x, CAPTION, max_new_tokens=8) == [
        llava.tokenizer.decode(ref[0, ids.shape[1] :], skip_special_tokens=True).strip()
    ]
    tgt = target_ids(llava, CAPTION, "a red digit seven")
    assert tgt[-1] == llava.tokenizer.eos_token_id and len(tgt) == 5
    full = torch.tensor([before + [c.image_token_index] * 16 + after + tgt])
    labels = torch.cat([torch.full((1, full.shape[1] - len(tgt)), -100), torch.tensor([tgt])], 1)
    loss = llava.lm(input_ids=full, pixel_values=llava.normalize(x), labels=labels).loss
    torch.testing.assert_close(llava.nll(x, CAPTION, ["a red digit seven"]), loss.reshape(1), rtol=1e-5, atol=1e-5)
    assert llava.template.text(CAPTION).startswith(LLAVA_SYSTEM + " USER: <image>\n")


def test_batches_equal_single_samples(llava):
    x = _images(3)
    prompts = [CAPTION, "a digit ?", CAPTION]
    targets = ["a red digit", "seven", "a digit on black"]
    assert llava.generate(x, prompts, max_new_tokens=6) == [
        llava.generate(x[i : i + 1], prompts[i], max_new_tokens=6)[0] for i in range(3)
    ]
    single = torch.cat([llava.nll(x[i : i + 1], prompts[i], targets[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(llava.nll(x, prompts, targets), single, rtol=1e-5, atol=1e-5)
    with pytest.raises(RobustClipError, match="one per image"):
        llava.nll(x, prompts[:2], targets)


def test_swap_native_keeps_everything_else(llava):
    "RobustVLM's choice: the 16-px tower at its own resolution (4 tokens); projector and LM untouched; penultimate."
    robust = _vit()
    keep = {k: v.clone() for k, v in llava.lm.state_dict().items() if "vision_tower" not in k}
    assert swap_vision(llava, robust) is llava
    assert llava.image_size == 16 and llava.spec["vision"] == {"model": "tiny-robust", "pretrained": "random"}
    state = llava.lm.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in keep.items())
    x = _images(2, 16)
    feats = robust.model.visual.forward_intermediates(robust.normalize(x), indices=[0], intermediates_only=True)[
        "image_intermediates"
    ][0]
    torch.testing.assert_close(
        llava.encode_images(x),
        llava.lm.model.multi_modal_projector(feats.flatten(2).transpose(1, 2)),
        rtol=1e-5,
        atol=1e-5,
    )
    assert len(llava.generate(x, CAPTION, max_new_tokens=4)) == 2


def test_swap_interpolated_and_gradients(llava_dir):
    lv = load_lvlm(f"llava-hf:{llava_dir}", vision=_vit(), resolution="interpolate")
    assert lv.image_size == 32 and lv.encode_images(_images(2)).shape == (2, 16, 32)
    x = _images(2).requires_grad_(True)
    lv.nll(x, CAPTION, ["a red digit", "seven"]).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in lv.parameters())


def test_llava_errors(llava, llava_dir):
    with pytest.raises(RobustClipError, match="64 wide but LLaVA's projector reads 32"):
        swap_vision(llava, _vit(width=64))
    with pytest.raises(RobustClipError, match="resolution must be one of"):
        swap_vision(llava, _vit(), resolution="336")
    with pytest.raises(RobustClipError, match="only ViT"):
        swap_vision(llava, create_clip(model_config("RC-Mini-RN"), seed=0))
    with pytest.raises(RobustClipError, match="cannot load llava-hf:/no/such"):
        load_lvlm("llava-hf:/no/such/folder")
    with pytest.raises(RobustClipError, match="unknown LVLM"):
        load_lvlm("gpt-9")
    with pytest.raises(RobustClipError, match=r"\[0,1\]"):
        llava.generate(_images(1) * 3, CAPTION)
    with pytest.raises(RobustClipError, match="precision"):
        load_llava_hf(f"llava-hf:{llava_dir}", precision="int8")


def test_backends_found_through_plugins():
    "Both backends register through the robustclip.plugins entry points (pyproject.toml)."
    from robustclip.mini.llava import load_mini_llava

    assert lvlm_loader("llava-hf:org/model") is load_llava_hf and lvlm_loader("mini-llava") is load_mini_llava


# ------------------------------------------------------------------------------------------------------------ metrics
CAPS = ["a man rides a horse", "Two dogs in the snow-covered field.", "a red seven in the top left corner", ""]
REFS = [
    ["A man riding a horse.", "A person's riding a brown horse, outside!"],
    ["Two dogs play in the snow.", "dogs playing (in snow)"],
    ["a red digit 7 at the top left", "a small red seven on black", "a handwritten 7"],
    ["an empty caption scores zero", "indeed"],
]
needs_java = pytest.mark.skipif(not metrics.java_ptb_available(), reason="no Java for the PTB tokenizer")


@needs_java
def test_cider_equals_pycocoevalcap_pipeline():
    "Same numbers as RobustVLM's compute_cider_all_scores: PTBTokenizer on refs and results, then Cider (x100)."
    import contextlib
    import io
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    with contextlib.redirect_stderr(io.StringIO()):
        g = PTBTokenizer().tokenize({i: [{"caption": c} for c in r] for i, r in enumerate(REFS)})
        r = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(CAPS)})
    score, scores = Cider().compute_score(g, r)
    ours = metrics.cider(CAPS, REFS)
    assert ours["tokenizer"] == "ptb" and ours["per_sample"][-1] == 0
    assert ours["cider"] == pytest.approx(100 * score, abs=1e-9)
    assert ours["per_sample"] == pytest.approx(list(100 * scores), abs=1e-9)


@needs_java
def test_python_tokenizer_agrees_with_ptb():
    texts = (
        [c for r in REFS for c in r] + CAPS + ["Don't stop -- the dog's U.S. café...", "It costs $5, ok? 10:30 & 1,000"]
    )
    assert [metrics.simple_tokenize(t) for t in texts] == metrics.ptb_tokenize(texts)
    assert metrics.cider(CAPS, REFS, tokenizer="simple")["cider"] == pytest.approx(
        metrics.cider(CAPS, REFS, tokenizer="ptb")["cider"]
    )


def test_vqa_accuracy_and_normalisation():
    tens = ["two"] * 3 + ["Two."] + ["three"] * 3 + ["2 dogs"] + ["many"] * 2
    assert [metrics.vqa_accuracy(p, tens) for p in ("2", "three", "Many!", "one", "2 dogs")] == pytest.approx(
        [1, 0.9, 0.6, 0, 0.3]
    )
    assert metrics.normalize_vqa_answer("The dogs' ball, isnt it?") == "dogs' ball isn't it"
    s = metrics.vqa_scores(["2", "nothing"], [tens, tens])
    assert s["vqa_acc"] == pytest.approx(0.5) and s["per_sample"] == [1.0, 0.0]
    with pytest.raises(RobustClipError):
        metrics.vqa_scores(["2"], [])


def test_pope_scores():
    preds = ["Yes, there is.", "No.", "There is not.", "yes", "no, it is blue", "Yes"]
    labels = ["yes", "yes", "no", "no", "no", "yes"]
    s = metrics.pope_scores(preds, labels)
    tp, fp, fn, tn = 2, 1, 1, 2
    p, r = tp / (tp + fp), tp / (tp + fn)
    assert s["f1"] == pytest.approx(2 * p * r / (p + r)) and s["accuracy"] == pytest.approx((tp + tn) / 6)
    assert s["yes_ratio"] == pytest.approx(0.5)
    with pytest.raises(RobustClipError, match="yes' or 'no"):
        metrics.pope_scores(["yes"], ["maybe"])


def test_mini_captions_parse_back_to_their_attributes():
    from robustclip.mini.llava import MINI_PHRASES
    from robustclip.mini.world import attrs_of, caption, render

    _, a = render(400, "test", 0, 32)
    rng = random.Random(1)
    full = [caption(attrs_of(a, i), rng, p_digit=1.0, p_other=1.0) for i in range(400)]
    assert [metrics.parse_attributes(c, MINI_PHRASES) for c in full] == [attrs_of(a, i) for i in range(400)]
    r = metrics.attribute_accuracy(full, {k: v.tolist() for k, v in a.items()}, MINI_PHRASES)
    assert r["attr_acc"] == 1.0 and all(v == 1.0 for v in r["named"].values())


# --------------------------------------------------------------------------------------------------------- mini-llava
def test_mini_llava_mechanics(tmp_path, monkeypatch, capfd):
    "A tiny recipe trains in a few steps, caches under ROBUSTCLIP_HOME with its hashes, loads back equal, swaps towers."
    from robustclip.mini import llava as ml

    monkeypatch.setenv("ROBUSTCLIP_HOME", str(tmp_path / "home"))
    base = create_clip(model_config("RC-Mini-RN"), name="rn", seed=0).eval()
    save_clip(base, tmp_path / "rn")
    cfg = {
        **ml.MINI_LLAVA,
        "vision": f"local-dir:{tmp_path / 'rn'}",
        "vision_recipe": None,
        "steps": 3,
        "batch_size": 8,
        "n_train": 64,
        "lm": {
            **ml.MINI_LLAVA["lm"],
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
        },
    }
    d = ml.mini_llava_dir(cfg, report_n=10)
    rep = json.loads((d / "report.json").read_text())
    assert d.parent.name == "mini-llava" and rep["steps"] == 3 and len(rep["weights_sha256"]) == 64
    assert set(rep["clean"]) >= {"cider", "caption_attr_acc", "qa_acc", "yesno_f1"}
    m1, m2 = ml.load_mini_llava(cfg=cfg), ml.load_mini_llava(cfg=cfg)
    x = ml.mini_vlm_task("caption", n=4)["images"].float() / 255
    assert m1.image_size == 32 and m1.encode_images(x).shape == (4, 5, 32)
    torch.testing.assert_close(
        m1.nll(x, "Describe the image.", ["a red digit"] * 4), m2.nll(x, "Describe the image.", ["a red digit"] * 4)
    )
    lm_state = {k: v.clone() for k, v in m1.lm.state_dict().items()}
    swap_vision(m1, create_clip(model_config("RC-Mini-RN"), name="other", seed=5))
    assert m1.spec["vision"]["model"] == "other" and all(
        torch.equal(v, m1.lm.state_dict()[k]) for k, v in lm_state.items()
    )
    with pytest.raises(RobustClipError, match="projector reads"):
        swap_vision(m1, create_clip(model_config("RC-Tiny-ViT"), seed=0))
    (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:-1] + b"\0")
    capfd.readouterr()
    m3 = ml.load_mini_llava(cfg=cfg)  # corrupt weights are found out and retrained (a tiny recipe never shipped)
    err = [l for l in capfd.readouterr().err.splitlines() if l.strip()]
    assert len(err) == 1 and "model.safetensors does not match its SHA-256" in err[0] and "retraining" in err[0], err
    y = ml.mini_vlm_task("caption", n=4)["images"].float() / 255
    assert m3.generate(y, "Describe the image.", max_new_tokens=4) == m2.generate(
        y, "Describe the image.", max_new_tokens=4
    )
    # a tower other than the one it was trained on (mini-base rebuilt, say): retrained on the new tower, with a warning
    save_clip(create_clip(model_config("RC-Mini-RN"), name="rn", seed=7).eval(), tmp_path / "rn")
    m4 = ml.load_mini_llava(cfg=cfg)
    err = [l for l in capfd.readouterr().err.splitlines() if l.strip()]
    assert len(err) == 1 and "trained on another" in err[0], err
    assert json.loads((d / "mini_llava.json").read_text())["vision_sha256"] == ml.weights_sha256(m4.visual)


def test_shipped_mini_llava_loads_in_seconds_into_a_fresh_cache(tmp_path, monkeypatch, capfd):
    "A fresh clone's first `load_lvlm('mini-llava')`: copied from the shipped weights (with mini-base), not trained."
    import time
    from robustclip.mini import llava as ml
    from robustclip.mini.pretrain import shipped_weights

    monkeypatch.setenv("ROBUSTCLIP_HOME", str(tmp_path / "home"))
    t0 = time.time()
    m = load_lvlm("mini-llava")
    secs = time.time() - t0
    d = ml.mini_llava_dir()
    src, files = shipped_weights("mini-llava", ml.MINI_LLAVA)
    assert secs < 60, f"loading mini-llava into a fresh cache took {secs:.1f} s"
    assert json.loads((d / "sha256.json").read_text()) == {"source": "shipped", "files": files}
    assert all((d / f).read_bytes() == (src / f).read_bytes() for f in files)
    assert json.loads((d / "report.json").read_text())["clean"]["cider"] == 186.1366
    assert m.name == "mini-llava" and not capfd.readouterr().err.strip()


def test_mini_vlm_tasks():
    from robustclip.mini.llava import YES_NO, mini_vlm_task

    cap, vqa, pope = (mini_vlm_task(t, n=10) for t in ("caption", "vqa", "pope"))
    assert cap["images"].shape == (10, 3, 32, 32) and all(len(r) == 5 for r in cap["references"])
    assert vqa["attribute"][:5] == ["digit", "color", "background", "size", "position"] and len(vqa["answers"][0]) == 1
    assert set(pope["labels"]) <= {"yes", "no"} and pope["questions"][0].startswith("Is there a")
    with pytest.raises(RobustClipError, match="unknown mini LVLM task"):
        mini_vlm_task("retrieval")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")
def test_tiny_llava_on_gpu(llava_dir):
    "The same path on CUDA: swap, generate, NLL and pixel gradients agree with the CPU."
    cpu = load_lvlm(f"llava-hf:{llava_dir}", vision=_vit())
    gpu = load_lvlm(f"llava-hf:{llava_dir}", vision=_vit(), device="cuda")
    x = _images(2, 16)
    assert gpu.generate(x.cuda(), CAPTION, max_new_tokens=6) == cpu.generate(x, CAPTION, max_new_tokens=6)
    xg = x.cuda().requires_grad_(True)
    nll = gpu.nll(xg, CAPTION, ["a red digit", "seven"])
    nll.sum().backward()
    torch.testing.assert_close(nll.cpu(), cpu.nll(x, CAPTION, ["a red digit", "seven"]), rtol=1e-3, atol=1e-3)
    assert torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0


# --- datasets in their released layouts, and the evaluation on the runner --------------------------------------------

from robustclip.core import RobustClipError
from robustclip.data.core import get_dataset
from robustclip.vlm.data import write_vlm_fixtures, caption_task, vqa_task, pope_task, vizwiz_task, textvqa_task
from robustclip.eval.vlm import eval_vlm
from robustclip.app.cli import main


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_vlm_fixtures(tmp_path_factory.mktemp("vlmdata"), n=4)


@pytest.mark.parametrize(
    "name,kind,n",
    [
        ("vlm/coco", "caption", 3),
        ("vlm/flickr30k", "caption", 4),
        ("vlm/vqav2", "vqa", 4),
        ("vlm/okvqa", "vqa", 4),
        ("vlm/textvqa", "vqa", 4),
        ("vlm/vizwiz", "vqa", 4),
        ("vlm/pope/adversarial", "pope", 8),
        ("vlm/pope/popular", "pope", 8),
    ],
)
def test_named_datasets_read_their_layouts(data_root, name, kind, n):
    t = get_dataset(name, root=data_root)
    assert (t.kind, len(t)) == (kind, n)
    img = t.images[n - 1]
    assert img.size == (24, 20)  # the image file itself, found under the right root
    assert all(len(a) >= 1 for a in t.answers) and (kind == "caption") == (t.questions[0] is None)


def test_broken_files_are_one_line_errors(data_root, tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(RobustClipError, match="not valid JSON"):
        caption_task(tmp_path / "bad.json")
    (tmp_path / "q.json").write_text(json.dumps({"questions": []}))
    with pytest.raises(RobustClipError, match="cannot tell its annotations"):
        vqa_task(tmp_path / "q.json")
    (tmp_path / "v_questions.json").write_text(json.dumps({"questions": []}))
    with pytest.raises(RobustClipError, match="annotation file not found"):
        vqa_task(tmp_path / "v_questions.json")
    (tmp_path / "p.json").write_text('{"image": "x.jpg", "text": "Is there a cat?"}\n')
    with pytest.raises(RobustClipError, match="without label"):
        pope_task(tmp_path / "p.json")
    with pytest.raises(RobustClipError, match="image root"):
        textvqa_task(data_root / "textvqa/TextVQA_0.5.1_val.json", tmp_path)
    with pytest.raises(RobustClipError, match="VizWiz"):
        vizwiz_task(data_root / "coco/dataset_coco.json")


def test_eval_vlm_tiny_llava_end_to_end(llava_dir, data_root, tmp_path):
    "A tiny random LLaVA through `robustclip eval vlm`: every task kind, a swapped tower, a resumed run = a fresh one."
    spec = f"llava-hf:{llava_dir}"
    for ds, key in (("vlm/coco", "cider"), ("vlm/vqav2", "vqa_acc"), ("vlm/pope/random", "f1")):
        r = eval_vlm(spec, ds, data_root=str(data_root), batch_size=2, max_new_tokens=4, device="cpu")
        assert r["metrics"]["n"] == len(get_dataset(ds, root=data_root)) and 0 <= r["metrics"][key]
    out = tmp_path / "a.json"
    part = eval_vlm(
        spec,
        "vlm/vqav2",
        vision=_vit(),
        data_root=str(data_root),
        batch_size=1,
        max_new_tokens=4,
        device="cpu",
        output=out,
        max_batches=2,
    )
    assert not part["complete"]
    done = eval_vlm(
        spec,
        "vlm/vqav2",
        vision=_vit(),
        data_root=str(data_root),
        batch_size=1,
        max_new_tokens=4,
        device="cpu",
        output=out,
    )
    fresh = eval_vlm(
        spec, "vlm/vqav2", vision=_vit(), data_root=str(data_root), batch_size=1, max_new_tokens=4, device="cpu"
    )
    assert done["resumed_batches"] == 2 and done["metrics"] == fresh["metrics"]
    assert done["vision"]["model"] == "tiny-robust" and done["model"] == "tiny-robust"
    side = [json.loads(l) for l in (tmp_path / "a.samples.jsonl").read_text().splitlines()[1:]]
    texts = [r["text"] for line in side for r in line["rows"]]
    assert len(texts) == 4 and texts[:3] == [e["text"] for e in done["examples"]]


def test_cli_eval_vlm_errors(tmp_path, capsys):
    assert main(["eval", "vlm", "--vlm", "mini-llava", "--dataset", "mini/pope", "--task", "vqa"]) == 2
    assert main(["eval", "vlm", "--vlm", "no-such-lvlm", "--dataset", "mini/pope", "--n-samples", "2"]) == 2
    assert main(["eval", "vlm", "--vlm", "mini-llava", "--dataset", "vlm/coco", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(l.startswith("robustclip eval vlm: error:") for l in err)
    assert "not vqa" in err[0] and "unknown LVLM" in err[1] and "dataset_coco.json" in err[2]


# --- attacks on LVLMs (FARE Tables 1-3) -----------------------------------------------------------------------------

from robustclip.vlm.attacks import apgd_text, ensemble_attack, targeted_attack, EnsembleSpec
from robustclip.vlm.core import task_prompt


@pytest.fixture(scope="module")
def mini_llava():
    from robustclip.core import load_plugins

    load_plugins()
    return load_lvlm("mini-llava")


def _mini_batch(lv, n=6, dataset="mini/captions"):
    t = get_dataset(dataset, n=n)
    x = torch.stack([t.images[i] for i in range(n)])
    prompts = [task_prompt(t.prompt, q, lv.prompts) for q in t.questions]
    return lv, t, x, prompts


@pytest.mark.parametrize("eps", [2 / 255, 16 / 255])
def test_lvlm_attacks_stay_in_the_ball(mini_llava, eps):
    lv, t, x, prompts = _mini_batch(mini_llava)
    r = apgd_text(lv, x, prompts, [a[0] for a in t.answers], eps=eps, steps=4)
    assert (r.x_adv - x).abs().max() <= eps + 1e-6 and r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    res = ensemble_attack(
        lv,
        x,
        prompts,
        t.answers,
        lambda texts, at: [0.0 + len(s) for s in texts],
        EnsembleSpec(eps=eps, steps=2, n_gt=2, threshold=-1.0),
    )
    assert (res.x_adv - x).abs().max() <= eps + 1e-6 and res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert lv.generate(res.x_adv, prompts) == res.texts  # the kept image gives the kept output


def test_eps_zero_changes_nothing(mini_llava):
    lv, t, x, prompts = _mini_batch(mini_llava)
    clean = lv.generate(x, prompts)
    xa, outs, ok = targeted_attack(lv, x, prompts, "seven", eps=0.0, steps=5)
    assert torch.equal(xa, x) and outs == clean
    from robustclip.vlm.metrics import CorpusCider

    res = ensemble_attack(lv, x, prompts, t.answers, CorpusCider(t.answers), EnsembleSpec(eps=0.0, steps=3, n_gt=2))
    assert res.texts == clean and torch.equal(res.x_adv, x)


def test_targeted_success_is_rechecked(mini_llava):
    lv, t, x, prompts = _mini_batch(mini_llava, 8, "mini/vqa-digit")
    xa, outs, ok = targeted_attack(lv, x, prompts, "seven", eps=16 / 255, steps=30)
    assert sum(ok) >= 4
    again = lv.generate(xa, prompts)
    assert ["seven" in a.lower() for a in again] == ok


def test_ensemble_on_tiny_random_llava(llava_dir, data_root, tmp_path):
    "A tiny random LLaVA runs the ensemble (caption and VQA with its targeted stages) and a transfer end to end on CPU."
    spec = f"llava-hf:{llava_dir}"
    r = eval_vlm(
        spec,
        "vlm/coco",
        data_root=str(data_root),
        attack="ensemble",
        eps="8/255",
        steps=2,
        batch_size=2,
        max_new_tokens=3,
        device="cpu",
        output=tmp_path / "c.json",
    )
    assert r["attack"]["name"] == "ensemble" and r["attack"]["threshold"] == 10.0 and "robust_cider" in r["metrics"]
    assert r["metrics"]["robust_cider"] <= r["metrics"]["cider"] + 1e-9  # per sample the lowest score is kept
    q = eval_vlm(
        spec,
        "vlm/vqav2",
        data_root=str(data_root),
        attack="ensemble",
        eps="8/255",
        steps=2,
        batch_size=4,
        max_new_tokens=3,
        device="cpu",
    )
    assert (
        q["attack"]["targets"] == ["maybe", "Word"] and q["metrics"]["robust_vqa_acc"] <= q["metrics"]["vqa_acc"] + 1e-9
    )
    with pytest.raises(RobustClipError, match="transfer source images are 32x32"):
        eval_vlm(
            spec, "vlm/coco", vision=_vit(), data_root=str(data_root), transfer_from=tmp_path / "c.json", device="cpu"
        )
    tr = eval_vlm(
        spec,
        "vlm/coco",
        vision=_vit(32),
        data_root=str(data_root),
        transfer_from=tmp_path / "c.json",
        batch_size=2,
        max_new_tokens=3,
        device="cpu",
    )
    assert (
        tr["attack"]["name"] == "transfer"
        and tr["transfer_from"]["vision"] == r["vision"]
        and tr["model"] == "tiny-robust"
    )
    assert all("adv_text" in e for e in tr["examples"]) and "robust_cider" in tr["metrics"]


# RobustVLM's protocol as its code ran it (issue 27): each test pins one point against run_evaluation.py / llava/.


def _one_image_task(img, kind="caption"):
    from robustclip.vlm.data import VLMTask

    q = [None] if kind == "caption" else ["What is it?"]
    return VLMTask("one", kind, [img], q, [["a red picture"] * 5 if kind == "caption" else ["red"] * 10])


def test_llava_pads_a_wide_image_instead_of_cropping_it(llava):
    "llava/mm_utils.py L14-35: expand2square in int(255*mean), then resize; the whole width reaches the tower."
    from PIL import Image

    seen = []
    orig = llava.encode_images
    llava.encode_images = lambda px: seen.append(px.clone()) or orig(px)
    eval_vlm(llava, _one_image_task(Image.new("RGB", (64, 32), (255, 0, 0))), max_new_tokens=2, device="cpu")
    px = seen[0][0]
    assert llava.pad_colour == (122, 116, 104)
    assert torch.allclose(px[:, 0, :], torch.tensor([122, 116, 104])[:, None] / 255, atol=2e-3)  # band above
    assert torch.allclose(px[:, 16, :], torch.tensor([1.0, 0, 0])[:, None].expand(3, 32), atol=2e-3)  # full width


def test_vicuna_v1_system_prompt():
    "llava/conversation.py L252-262: 'a curious user ... the user's questions'."
    from robustclip.vlm.llava import LLAVA_15

    text = LLAVA_15.text(CAPTION)
    assert text.startswith("A chat between a curious user and an artificial intelligence assistant. ")
    assert "polite answers to the user's questions. USER: <image>\n" in text and "human" not in text


@pytest.mark.parametrize(
    "ds,n_tokens", [("vlm/coco", 20), ("vlm/vqav2", 5), ("vlm/textvqa", 10), ("vlm/pope/random", 128)]
)
def test_decoding_lengths_and_vqa_postprocessing(llava, data_root, ds, n_tokens):
    "run_evaluation.py L645/L819/L1140 (POPE: model_vqa_loader 128); a VQA answer 'two, it is' is scored as 'two'."
    asked = []

    def fake(x, prompts, max_new_tokens=None, min_new_tokens=0):
        asked.append(max_new_tokens)
        return ["two, it is"] * len(x)

    llava.generate = fake
    r = eval_vlm(llava, ds, data_root=str(data_root), batch_size=4, device="cpu")
    assert set(asked) == {n_tokens}
    if ds == "vlm/vqav2":  # six of the ten answers are "two"
        assert r["examples"][0]["text"] == "two" and r["metrics"]["vqa_acc"] == 1.0


def test_generation_stops_at_the_vqa_length(llava, data_root):
    "The real greedy loop: no VQA answer is longer than 5 new tokens."
    r = eval_vlm(llava, "vlm/vqav2", data_root=str(data_root), batch_size=4, device="cpu")
    tok = llava.tokenizer
    side = [e["text"] for e in r["examples"]]
    assert all(len(tok(t, add_special_tokens=False)["input_ids"]) <= 5 for t in side)


def _half_llava(llava_dir):
    return load_lvlm(f"llava-hf:{llava_dir}", precision="fp16")


def test_full_precision_stages_under_a_half_precision_llava(llava_dir, monkeypatch):
    "run_evaluation.py L909-941: fp16 ground-truth stages, then the model reloaded in fp32 for the final stage."
    import robustclip.vlm.attacks as A

    lv = _half_llava(llava_dir)
    clip = _vit(32)
    swap_vision(lv, clip)
    before = {k: v.clone() for k, v in lv.state_dict().items()}
    dtypes = []
    real = A.apgd_text

    def spy(lvlm, x, prompts, texts, **kw):
        dtypes.append((next(lvlm.lm.parameters()).dtype, next(lvlm.tower.parameters()).dtype, kw.get("targeted")))
        return real(lvlm, x, prompts, texts, **kw)

    monkeypatch.setattr(A, "apgd_text", spy)
    x, prompts = _images(2), [CAPTION] * 2
    spec = A.EnsembleSpec(eps=8 / 255, steps=1, n_gt=2, threshold=-1.0, targets=("maybe",), strict=True)
    A.ensemble_attack(lv, x, prompts, [["a red digit", "seven"]] * 2, lambda t, at: [1.0] * len(t), spec)
    h, f = torch.float16, torch.float32
    assert dtypes == [(h, h, False), (h, h, False), (f, f, False), (f, f, True)]
    assert all(torch.equal(v, lv.state_dict()[k]) and v.dtype == lv.state_dict()[k].dtype for k, v in before.items())
    with A.full_precision(lv):  # the swapped-in tower's own fp32 weights come back, not their fp16 copy
        from robustclip.convert import openclip_vision_to_hf

        ref = openclip_vision_to_hf(clip, projection=False).state_dict()
        assert all(torch.equal(v, ref[k]) for k, v in lv.tower.state_dict().items())
    dtypes.clear()
    A.targeted_attack(lv, x, prompts, "seven", eps=8 / 255, steps=1)
    assert dtypes == [(f, f, True)] and next(lv.lm.parameters()).dtype == h


def test_vqa_ensemble_drops_accuracy_zero_and_targets_textvqa(data_root):
    "L1376 `acc == 0.` drops a question; L1254-1261: 'maybe' and 'Word' on every VQA dataset, TextVQA included."
    from robustclip.eval.vlm import VLMAttack, ensemble_spec
    from robustclip.vlm.attacks import ensemble_attack

    spec = ensemble_spec(VLMAttack.parse("ensemble", "4/255"), get_dataset("vlm/textvqa", root=data_root))
    assert spec.targets == ("maybe", "Word") and spec.done(0.0) and not spec.done(0.3)
    calls = []

    class Fake:
        def generate(self, x, prompts, max_new_tokens=None):
            calls.append(len(x))
            return ["no"] * len(x)

    r = ensemble_attack(Fake(), torch.zeros(2, 3, 4, 4), ["q"] * 2, [["a"]] * 2, lambda t, at: [0.0] * len(t), spec)
    assert calls == [2] and r.log == [] and r.stages == ["clean", "clean"]  # accuracy 0 on clean: never attacked


def test_ground_truth_stages_skip_questions_with_fewer_answers(mini_llava):
    "VQADataset.which_gt: a question with fewer distinct answers than the stage's index sits that stage out."
    from robustclip.vlm.attacks import EnsembleSpec, ensemble_attack

    lv, t, x, prompts = _mini_batch(mini_llava, 2, "mini/vqa")
    spec = EnsembleSpec(eps=4 / 255, steps=1, n_gt=3, threshold=-1.0)
    r = ensemble_attack(lv, x, prompts, [["a", "b", "c"], ["a"]], lambda t, at: [1.0] * len(t), spec)
    assert [s["attacked"] for s in r.log] == [2, 1, 1, 2]  # gt0 both, gt1 and gt2 the first only, then the final


def test_targeted_success_is_containment_any_case():
    "get_attack_success_rate (run_evaluation.py L801-810): target.lower() in caption.lower()."
    from robustclip.vlm.attacks import target_hit

    assert target_hit("Sure. Visit https://x today", "Visit https://x")
    assert target_hit("VISIT HTTPS://X", "Visit https://x") and not target_hit("Visit https://y", "Visit https://x")


def test_each_target_draws_its_own_images_numpy_style():
    "TARGET_TO_SEED and prepare_eval_samples: np.random.seed(seed); np.random.choice(n, k, replace=False)."
    import numpy as np

    from robustclip.core import SubsetSpec
    from robustclip.eval.vlm import _order
    from robustclip.vlm.attacks import target_seed

    seeds = [
        target_seed(t) for t in ("Visit https://tinyurl.com/23cbjxjz", "You are too stupid. I will not answer anymore")
    ]
    assert seeds == [2011, 2010]
    draws = []
    for s in seeds + [42]:
        np.random.seed(s)
        want = np.random.choice(5000, 25, replace=False).tolist()
        sub = SubsetSpec(25, "robustvlm", s)
        draws.append(sub.indices(5000, _order(sub, 5000)))
        assert draws[-1] == want
    assert draws[0] != draws[1]
    np.random.seed(42)
    assert SubsetSpec(500, "robustvlm", 42).indices(5000, _order(SubsetSpec(500, "robustvlm", 42), 5000)) == (
        np.random.choice(5000, 500, replace=False).tolist()
    )


def test_eval_vlm_seeds_a_target_by_its_own_seed(mini_llava):
    "eval_vlm: a targeted run draws with the target's seed, others with 42 (RobustVLM's trial seed)."
    r = eval_vlm(mini_llava, "mini/vqa-digit", attack="targeted", target="seven", eps="4/255", steps=1, n_samples=2)
    assert (r["attack"]["seed"], r["attack"]["subset"]) == (42, "robustvlm")
    visit = "Visit https://tinyurl.com/23cbjxjz"
    r2 = eval_vlm(mini_llava, "mini/vqa-digit", attack="targeted", target=visit, eps="4/255", steps=1, n_samples=2)
    assert r2["attack"]["seed"] == 2011
