"Adversarial fine-tuning: losses against the reference formulas, configs, the training attack, exact resume, CLI."

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from hypothesis import given, settings, strategies as st
from safetensors.torch import load_file

from robustclip.core import RobustClipError
from robustclip.app.cli import main
from robustclip.models import load_clip
from robustclip.train.config import load_config, make_config, config_keys
from robustclip.train.losses import FARELoss, TeCoALoss, SimCLIPLoss
from robustclip.train.loop import train, Trainer
from robustclip.train.methods import training_attack, get_method, available_methods

PAPER = ["fare2", "fare4", "tecoa2", "tecoa4", "simclip2", "simclip4"]


@pytest.fixture(scope="session")
def folder(tmp_path_factory) -> Path:
    "A tiny 4-class image folder (64 random 32x32 images): mechanics, not accuracy."
    from robustclip.data.core import write_image_folder

    d = tmp_path_factory.mktemp("data") / "tiny"
    g = torch.Generator().manual_seed(0)
    write_image_folder(
        d, torch.rand(64, 3, 32, 32, generator=g), [i % 4 for i in range(64)], ["zero", "one", "two", "three"]
    )
    return d


def tiny_cfg(folder, out, **kw):
    base = dict(
        model="RC-Tiny-ViT",
        pretrained=None,
        dataset=f"imagefolder:{folder}",
        eps="4/255",
        steps=8,
        batch_size=16,
        warmup=2,
        lr=1e-3,
        attack_steps=3,
        check_every=-1,
        check_samples=8,
        check_steps=2,
        threads=1,
        log_every=2,
        output_dir=str(out),
    )
    return make_config({**base, **kw})


def weights(run: Path) -> dict:
    return load_file(str(run / "final" / "open_clip_model.safetensors"))


def init_weights() -> dict:
    "The seed-0 random RC-Tiny-ViT the tiny runs start from (the trainer seeds with cfg.seed before building)."
    from robustclip.core import seed_everything

    seed_everything(0)
    return load_clip("RC-Tiny-ViT").model.state_dict()


# ---------------------------------------------------------------- losses = the reference code's formulas
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), d=st.integers(1, 16), seed=st.integers(0, 2**16))
def test_fare_is_summed_squared_l2(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    e, t = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    ref = F.mse_loss(e, t, reduction="none").sum(-1).mean()  # RobustVLM l2(): sum over dims, mean over batch
    torch.testing.assert_close(FARELoss()(e, t)["loss"], ref)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), c=st.integers(2, 9), seed=st.integers(0, 2**16))
def test_tecoa_is_ce_over_100_cos(n, c, seed):
    g = torch.Generator().manual_seed(seed)
    e, T, y = torch.randn(n, 8, generator=g), torch.randn(c, 8, generator=g), torch.randint(0, c, (n,), generator=g)
    ref = F.cross_entropy(F.normalize(e, dim=-1) @ (100 * F.normalize(T, dim=-1).T), y)
    torch.testing.assert_close(TeCoALoss(T)(e, y)["loss"], ref)


def test_simclip_code_gradient_is_half_cosine():
    torch.manual_seed(0)
    adv, org = torch.randn(5, 8, requires_grad=True), torch.randn(5, 8)
    # the released code: forward(p, z) = -cos(p, z.detach()).mean(); loss = forward(adv, org)/2 + forward(org, adv)/2
    fwd = lambda p, z: -F.cosine_similarity(p, z.detach()).mean()
    ref = fwd(adv, org) / 2 + fwd(org, adv) / 2
    out = SimCLIPLoss("code")(adv, org)["loss"]
    torch.testing.assert_close(out, ref)
    (g1,) = torch.autograd.grad(out, adv)
    (g2,) = torch.autograd.grad(-0.5 * F.cosine_similarity(adv, org).mean(), adv)
    torch.testing.assert_close(g1, g2)


# ---------------------------------------------------------------- configs
@pytest.mark.parametrize("name", PAPER)
def test_paper_configs_hold_the_papers_settings(root, name):
    c = load_config(root / "configs" / "paper" / f"{name}.yaml")
    method, e = name[:-1], name[-1]
    assert (c.method, c.eps, c.name, c.model, c.pretrained, c.dataset, c.split) == (
        method,
        f"{e}/255",
        name,
        "ViT-L-14",
        "openai",
        "imagenet",
        "train",
    )
    assert (c.attack_steps, c.attack_step_size, c.attack_momentum, c.attack_random_start, c.norm) == (
        10,
        "1/255",
        0.9,
        True,
        "linf",
    )
    assert (c.warmup, c.schedule, c.clean_weight, c.precision, c.betas) == (1400, "cosine", 0.0, "fp32", [0.9, 0.999])
    if method == "simclip":
        assert (c.steps, c.batch_size, c.lr, c.weight_decay) == (10000, 64, 1e-3, 1e-5)
    else:
        assert (c.steps, c.batch_size, c.lr, c.weight_decay) == (20000, 128, 1e-5, 1e-4)
    if method == "tecoa":
        assert c.method_args == {"template": "This is a photo of a {}"}
    get_method(c.method).parse_args(c.method_args)


def test_mini_configs_resolve(root):
    files = sorted(
        f for f in (root / "configs" / "mini").glob("*.yaml") if f.name != "reproduce.yaml"
    )  # the plan, not a run
    assert {f.stem for f in files} >= {"fare2", "fare4", "tecoa2", "tecoa4", "simclip2", "simclip4"}
    for f in files:
        c = load_config(f)
        assert c.steps > 0
        get_method(c.method).parse_args(c.method_args)


def test_unknown_key_lists_valid_keys(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("method: fare\nwarmpu: 3\n")
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'warmpu'" in err and "did you mean warmup" in err and "attack_momentum" in err
    assert len(err.strip().splitlines()) == 1
    cfg.write_text("method: fare\n")
    assert main(["train", str(cfg), "steps=abc"]) == 2
    assert "not a valid int" in capsys.readouterr().err


def test_overrides_are_typed():
    c = load_config(None, ["lr=3e-4", "betas=0.9,0.95", "attack_random_start=false", "grad_clip=null", "steps=1e3"])
    assert (c.lr, c.betas, c.attack_random_start, c.grad_clip, c.steps) == (3e-4, [0.9, 0.95], False, None, 1000)
    assert len(config_keys()) == len(set(config_keys()))


def test_list_overrides_apply_to_a_config(folder, tmp_path):
    "train(cfg, overrides=[...]) applies `key=value` strings to a config (they used to be dropped silently)."
    cfg = tiny_cfg(folder, tmp_path / "unused", method="tecoa", steps=3)
    res = train(cfg, overrides=["steps=1", f"output_dir={tmp_path / 'o'}", "method_args.template=a photo of a {}"])
    assert res["step"] == 1 and Path(res["run_dir"]) == tmp_path / "o" and not (tmp_path / "unused").exists()
    rec = json.loads((tmp_path / "o" / "final" / "robustclip_train.json").read_text())
    assert rec["config"]["steps"] == 1 and rec["method"]["args"]["template"] == "a photo of a {}"
    with pytest.raises(RobustClipError, match="did you mean steps"):
        train(cfg, overrides=("stpes=1",))  # a typo is an error, tuple or list
    assert not (tmp_path / "unused").exists()


def test_one_schedule_reproduces_both_old_expressions():
    "lr_at is the trainer's former multiplier (peak=1) and the mini pretraining's former lr (peak=lr), bit for bit."
    import math
    from robustclip.train.loop import lr_at, build_optimizer

    def factor(s, w, n):
        return (s + 1) / w if s < w else 0.5 * (1 + math.cos(math.pi * (s - w) / max(1, n - w)))

    def pre(s, lr, w, n):
        return lr * (s + 1) / w if s < w else lr * 0.5 * (1 + math.cos(math.pi * (s - w) / max(1, n - w)))

    for w, n in ((1400, 20000), (10, 200), (2, 6), (0, 5)):
        assert all(lr_at(s, w, n) == factor(s, w, n) for s in range(n))
    assert all(lr_at(s, 100, 1500, peak=2e-3) == pre(s, 2e-3, 100, 1500) for s in range(1500))
    lin = torch.nn.Linear(3, 2)
    opt = build_optimizer(list(lin.named_parameters()), 2e-3, 0.1, (0.9, 0.98), 1e-6)  # the pretraining optimiser
    (g,) = opt.param_groups
    assert [id(p) for p in g["params"]] == [id(p) for p in lin.parameters()]
    assert (g["weight_decay"], g["betas"], g["eps"], g["lr"]) == (0.1, (0.9, 0.98), 1e-6, 2e-3)


def test_eps_is_parsed_once_and_carried(folder, tmp_path, monkeypatch):
    "The config parses eps into a ThreatModel when validated; the trainer, the methods and the check carry it."
    import robustclip.core as core
    import robustclip.train.config as C
    import robustclip.train.methods as M
    import robustclip.train.loop as L
    from robustclip.core import ThreatModel

    cfg = tiny_cfg(folder, tmp_path / "t", steps=2, check_every=1, attack_step_size="2/255")
    tr = Trainer(cfg)
    assert tr.threat is cfg.threat and tr.threat == ThreatModel(4 / 255, "linf") and cfg.pgd_step == 2 / 255
    parsed, real = [], core.parse_eps

    def spy(eps, norm="linf"):
        if isinstance(eps, str):
            parsed.append(eps)
        return real(eps, norm)

    monkeypatch.setattr(core, "parse_eps", spy)
    monkeypatch.setattr(C, "parse_eps", spy)
    tr.fit()  # two steps, a check at step 1 and at the end, the export
    assert parsed == [] and not hasattr(M, "parse_eps") and not hasattr(L, "parse_eps")
    assert json.loads((tmp_path / "t" / "final" / "robustclip_train.json").read_text())["step"] == 2


# ---------------------------------------------------------------- the training attack
def test_training_attack_uses_reference_pgd_settings(monkeypatch, tiny):
    import robustclip.attacks.pgd as P

    seen = {}

    def fake(model, x, loss_fn, **kw):
        seen.update(kw)
        return x.clone()

    monkeypatch.setattr(P, "pgd", fake)
    training_attack(make_config(eps="2/255"), tiny, torch.rand(2, 3, 32, 32), lambda e: e.sum(-1))
    assert seen["steps"] == 10 and seen["momentum"] == 0.9 and seen["best"] is False and seen["random_start"] is True
    assert abs(seen["eps"] - 2 / 255) < 1e-12 and abs(seen["step_size"] - 1 / 255) < 1e-12 and seen["norm"] == "linf"


def test_training_attack_stays_in_ball_and_leaves_param_grads(tiny):
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32)
    target = tiny(x).detach()
    tiny.train()
    xa = training_attack(
        make_config(eps="4/255", attack_steps=3),
        tiny,
        x,
        lambda e: ((e - target) ** 2).sum(-1),
        torch.Generator().manual_seed(0),
    )
    assert (xa - x).abs().max() <= 4 / 255 + 1e-6 and xa.min() >= 0 and xa.max() <= 1
    assert ((tiny(xa) - target) ** 2).sum(-1).mean() > 0
    assert tiny.training  # mode restored after the attack (eval during it)
    assert all(p.grad is None for p in tiny.parameters())  # gradients only w.r.t. the input


# ---------------------------------------------------------------- the trainer
@pytest.mark.parametrize("method", ["fare", "tecoa"])
def test_resume_is_bitwise_identical(folder, tmp_path, method):
    kw = dict(method=method, accum_steps=2, check_every=3)
    train(tiny_cfg(folder, tmp_path / "a", **kw))
    train(tiny_cfg(folder, tmp_path / "b", stop_after=5, **kw))  # stop at step 5 ...
    assert not (tmp_path / "b" / "final").exists()
    ck = torch.load(tmp_path / "b" / "checkpoints" / "latest.pt", weights_only=True)
    assert ck["step"] == 5 and ck["config"]["method"] == method
    train(tiny_cfg(folder, tmp_path / "b", **kw), resume="latest")  # ... and continue
    A, B = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert A.keys() == B.keys() and all(torch.equal(A[k], B[k]) for k in A)
    init = init_weights()
    assert all(not torch.equal(A[k], init[k]) for k in A if k.startswith("visual.") and k.endswith("weight"))


def test_resume_refuses_a_changed_config(folder, tmp_path):
    train(tiny_cfg(folder, tmp_path / "r", steps=2))
    with pytest.raises(RobustClipError, match=r"eps: '4/255' -> '2/255'"):
        train(tiny_cfg(folder, tmp_path / "r", steps=2, eps="2/255"), resume="latest")
    with pytest.raises(RobustClipError, match="--resume latest"):
        train(tiny_cfg(folder, tmp_path / "r", steps=2))


def test_only_the_vision_tower_trains(folder, tmp_path):
    train(tiny_cfg(folder, tmp_path / "v", steps=3, method="simclip", keep_every=2, save_every=1))
    W, base = weights(tmp_path / "v"), init_weights()
    txt = [k for k in W if not k.startswith("visual.")]
    assert txt and all(torch.equal(W[k], base[k]) for k in txt)
    assert (tmp_path / "v" / "checkpoints" / "step_2.pt").is_file()
    rec = json.loads((tmp_path / "v" / "final" / "robustclip_train.json").read_text())
    assert rec["method"] == {"method": "simclip", "tower": "vision", "args": None, "variant": "code"}
    saved = yaml.safe_load((tmp_path / "v" / "config.yaml").read_text())
    assert saved["method"] == "simclip" and saved["betas"] == [0.9, 0.999] and set(saved) == set(config_keys())


def test_grad_checkpointing_and_bf16_run(folder, tmp_path):
    train(tiny_cfg(folder, tmp_path / "p", steps=2))
    train(tiny_cfg(folder, tmp_path / "g", steps=2, grad_checkpointing=True))
    A, G = weights(tmp_path / "p"), weights(tmp_path / "g")
    assert all(torch.allclose(A[k], G[k], atol=1e-5) for k in A)  # checkpointing changes memory, not results
    train(tiny_cfg(folder, tmp_path / "h", steps=2, precision="bf16", method="simclip-paper"))
    lines = [json.loads(l) for l in (tmp_path / "h" / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(l["loss"])) for l in lines if "loss" in l)


def test_cli_train_leaves_a_loadable_model(folder, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            dict(
                method="tecoa",
                model="RC-Tiny-ViT",
                pretrained=None,
                dataset=f"imagefolder:{folder}",
                steps=3,
                batch_size=8,
                warmup=1,
                attack_steps=2,
                check_steps=2,
                check_samples=8,
                threads=1,
            )
        )
    )
    assert main(["train", str(cfg), f"output_dir={tmp_path}/run", "method_args.template=a photo of a {}"]) == 0
    out = capsys.readouterr().out
    assert "step 3/3" in out and "robust_acc" in out
    m = load_clip(f"local-dir:{tmp_path}/run/final")
    assert m.encode_image(torch.rand(1, 3, 32, 32)).shape == (1, 64)
    assert (
        json.loads((tmp_path / "run" / "final" / "robustclip_train.json").read_text())["method"]["args"]["template"]
        == "a photo of a {}"
    )
