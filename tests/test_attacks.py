"Attacks: PGD's training contract, APGD against the reference (torchattacks' port of fra31), the cascade, its checks."

import math
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from robustclip.attacks.pgd import pgd
from robustclip.attacks.base import (
    eval_mode,
    project,
    lp_norm,
    RobustnessWarning,
    GradientWarning,
    EpsZeroWarning,
    RandomNoiseWarning,
    TooFewClassesWarning,
    TrainModeWarning,
    RandomizedModelWarning,
    SoftmaxOutputWarning,
)
from robustclip.attacks.losses import get_objective, ce_loss, l2sq_loss, cosine_loss
import copy
from robustclip.attacks.apgd import APGD, GROUP_FLOPS, apgd, apgd_run, apgd_targeted, apgd_init, kth_target
from robustclip.attacks.cascade import Cascade, parse_attack
from robustclip.attacks.registry import make_attack
from robustclip.core import ThreatModel


def mlp(seed=0, d=48, c=10, hidden=64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, c)).eval()


@pytest.fixture(scope="module")
def digits():
    "A small MLP fitted on sklearn digits (8x8 RGB) in a fraction of a second: a model with real robustness numbers."
    from sklearn.datasets import load_digits

    d = load_digits()
    X, Y = (torch.tensor(d.images, dtype=torch.float32)[:, None] / 16).repeat(1, 3, 1, 1), torch.tensor(d.target)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(192, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(m(X[perm[:1400]]), Y[perm[:1400]]).backward()
        opt.step()
    return m.eval(), X[perm[1400:1528]], Y[perm[1400:1528]]


# ---------------------------------------------------------------- PGD: the training-attack contract


def _reference_training_pgd(model, x, y, *, eps, steps, step, momentum, init):
    "RobustVLM's training PGD, written out (with the initial clamp this package chooses), for comparison."
    delta, v = init.clone(), torch.zeros_like(x)
    delta = (x + delta).clamp(0, 1) - x
    for _ in range(steps):
        d = delta.clone().requires_grad_(True)
        loss = F.cross_entropy(model(x + d), y, reduction="none").sum()
        (g,) = torch.autograd.grad(loss, d)
        v = momentum * v + g.sign()
        v = v.sign()
        delta = (delta + step * v).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    return x + delta


def test_pgd_matches_the_reference_training_attack():
    m, x = mlp(1), torch.rand(16, 3, 4, 4)
    y = torch.randint(0, 10, (16,))
    gen = torch.Generator().manual_seed(5)
    init = (2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(5)) - 1) * (4 / 255)
    ours = pgd(
        m,
        x,
        lambda o: F.cross_entropy(o, y, reduction="none"),
        eps=4 / 255,
        steps=10,
        step_size=1 / 255,
        momentum=0.9,
        generator=gen,
    )
    ref = _reference_training_pgd(m, x, y, eps=4 / 255, steps=10, step=1 / 255, momentum=0.9, init=init)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_pgd_restores_mode_and_never_touches_parameter_grads():
    m = nn.Sequential(nn.Flatten(), nn.Linear(48, 10), nn.Dropout(0.3)).train()
    for p in m.parameters():
        p.grad = torch.ones_like(p)
    x = torch.rand(4, 3, 4, 4)
    seen = []
    m.register_forward_hook(lambda mod, i, o: seen.append(mod.training))
    pgd(m, x, lambda o: o.logsumexp(1), eps=8 / 255, steps=3)
    assert m.training and all(not s for s in seen)
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in m.parameters())


def test_pgd_signature_is_the_agreed_contract():
    import inspect

    sig = inspect.signature(pgd)
    assert list(sig.parameters)[:3] == ["model", "x", "loss_fn"]
    for k, v in dict(norm="linf", steps=10, best=False, generator=None).items():
        assert sig.parameters[k].default == v and sig.parameters[k].kind is inspect.Parameter.KEYWORD_ONLY
    assert sig.parameters["eps"].default is inspect.Parameter.empty
    from robustclip.attacks.pgd import PGDStep  # the step rule, gathered from `**step`: the same keywords and defaults

    assert PGDStep() == PGDStep(step_size=None, momentum=0.0, random_start=True, clip_start=True)
    assert sig.parameters["step"].kind is inspect.Parameter.VAR_KEYWORD
    with pytest.raises(ValueError, match="pgd takes no option 'momentun'"):
        pgd(mlp(0), torch.rand(2, 3, 4, 4), lambda o: o.sum(1), eps=0.1, momentun=0.9)


def test_pgd_embedding_objective_increases_distance():
    enc = mlp(2, c=16)
    x = torch.rand(8, 3, 4, 4)
    with torch.no_grad():
        target = enc(x)
    for name in ("l2sq", "cos"):
        obj = get_objective(name)
        xa = pgd(enc, x, obj.bind(target), eps=4 / 255, steps=10)
        with torch.no_grad():
            assert (obj(enc(xa), target) > obj(enc(x), target) + 1e-6).all()


# ---------------------------------------------------------------- APGD against the reference behaviour


def _same_init(x, eps, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = 2 * torch.rand(x.shape, generator=g) - 1
    return (x + eps * t / t.flatten(1).abs().amax(1).view(-1, 1, 1, 1)).clamp(0, 1)


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_run_reproduces_torchattacks_trajectory(loss):
    "Same start, same model: our single run reaches the same best loss and flags as torchattacks' APGD (a fra31 port)."
    torchattacks = pytest.importorskip("torchattacks")
    m, x = mlp(0), torch.rand(200, 3, 4, 4)
    with torch.no_grad():
        y = m(x).argmax(1)
    atk = torchattacks.APGD(m, eps=8 / 255, steps=100, loss=loss, seed=0)
    torch.manual_seed(0)
    _, acc, loss_best, _ = atk.attack_single_run(x, y)
    r = apgd_run(m, x, y, loss, eps=8 / 255, x_init=_same_init(x, 8 / 255), steps=100, early_stop=False)
    assert torch.equal(r.fooled, ~acc.bool())
    torch.testing.assert_close(r.loss, loss_best.float(), atol=1e-4, rtol=1e-4)


def test_apgd_targeted_run_reproduces_torchattacks():
    torchattacks = pytest.importorskip("torchattacks")
    m, x = mlp(3), torch.rand(150, 3, 4, 4)
    with torch.no_grad():
        z = m(x)
        y = z.argmax(1)
    atk = torchattacks.APGDT(m, eps=8 / 255, steps=50, n_classes=10, seed=0)
    atk.target_class = 3  # their 3rd-highest logit = our 2nd most likely wrong class
    torch.manual_seed(0)
    _, acc, loss_best, _ = atk.attack_single_run(x, y)
    r = apgd_run(
        m, x, y, "dlr-t", kth_target(z, y, 2), eps=8 / 255, x_init=_same_init(x, 8 / 255), steps=50, early_stop=False
    )
    assert torch.equal(r.fooled, ~acc.bool())
    torch.testing.assert_close(r.loss, loss_best.float(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("attack", ["apgd-t", "apgd-t-restarts", "apgd-ce-restarts"])
def test_runs_side_by_side_give_the_sequential_result(digits, monkeypatch, attack):
    "Targets and restarts one after another, partly or all side by side: the same breaks, points and losses."
    import robustclip.attacks.apgd as apgd_module

    m, x, y = digits
    m64, x64 = copy.deepcopy(m).double(), x.double()  # float64: batched arithmetic cannot flip a step's sign
    sizes, group_size = [], apgd_module.group_size
    monkeypatch.setattr(apgd_module, "group_size", lambda *a: sizes.append(group_size(*a)) or sizes[-1])

    def run(budget):
        monkeypatch.setitem(GROUP_FLOPS, "cpu", budget)  # 0: one run at a time; inf: as many as the batch holds
        kw = dict(eps=32 / 255, steps=15, generator=torch.Generator().manual_seed(3))  # targets: several break a point
        if attack == "apgd-ce-restarts":
            return apgd(m64, x64, y, "ce", restarts=4, **kw)
        return apgd_targeted(m64, x64, y, n_target_classes=5, restarts=2 if attack == "apgd-t-restarts" else 1, **kw)

    seq = run(0.0)
    assert max(sizes) == 1 and 0 < seq.fooled.sum() < len(y)
    for budget in (2.5e6, math.inf):
        sizes.clear()
        r = run(budget)
        assert max(sizes) > 1  # some runs did go side by side
        assert torch.equal(r.fooled, seq.fooled) and torch.equal(r.x_adv, seq.x_adv) and torch.equal(r.loss, seq.loss)
        assert r.unconfirmed == seq.unconfirmed
    with torch.no_grad():
        assert torch.equal(m64(seq.x_adv).argmax(1) != y, seq.fooled)


def test_apgd_differentiates_every_iterate_but_the_last(digits):
    "N iterations: N + 1 forwards (the start and each iterate), N backwards (the last iterate's gradient is unused)."
    m, x, y = digits
    calls = {"forward": 0, "backward": 0}

    class Counted(nn.Module):
        def forward(self, z):
            out = m(z)
            calls["forward"] += 1
            out.register_hook(lambda g: calls.__setitem__("backward", calls["backward"] + 1))
            return out

    apgd_run(Counted(), x[:16], y[:16], "ce", eps=4 / 255, steps=7, early_stop=False)
    assert calls == {"forward": 8, "backward": 7}


def test_early_stop_changes_cost_not_flags(digits):
    m, x, y = digits
    a = apgd(m, x, y, "ce", eps=16 / 255, steps=30, generator=torch.Generator().manual_seed(1))
    b = apgd(m, x, y, "ce", eps=16 / 255, steps=30, generator=torch.Generator().manual_seed(1), early_stop=False)
    assert torch.equal(a.fooled, b.fooled) and 0 < a.fooled.sum() < len(y)
    with torch.no_grad():
        assert torch.equal(m(a.x_adv).argmax(1) != y, a.fooled)


def test_apgd_is_at_least_as_strong_as_pgd(digits):
    m, x, y = digits
    r = apgd(m, x, y, "ce", eps=16 / 255, steps=50, generator=torch.Generator().manual_seed(0))
    xp = pgd(m, x, get_objective("ce").bind(y), eps=16 / 255, steps=50, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pgd_fooled = (m(xp).argmax(1) != y).sum()
    assert r.fooled.sum() >= pgd_fooled


@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 0.5)])
def test_apgd_stays_in_ball_and_box(norm, eps):
    m, x = mlp(4), torch.rand(32, 3, 4, 4)
    y = torch.randint(0, 10, (32,))
    r = apgd(m, x, y, "dlr", eps=eps, norm=norm, steps=20, restarts=2, generator=torch.Generator().manual_seed(0))
    assert (lp_norm(r.x_adv - x, norm) <= eps + 1e-5).all()
    assert r.x_adv.min() >= 0 and r.x_adv.max() <= 1 and torch.isfinite(r.x_adv).all()


def test_apgd_embedding_loss_keeps_best_over_restarts():
    enc, x = mlp(5, c=16), torch.rand(8, 3, 4, 4)
    with torch.no_grad():
        target = enc(x)
    r1 = apgd(enc, x, target, "l2sq", eps=4 / 255, steps=20, restarts=1, generator=torch.Generator().manual_seed(0))
    r3 = apgd(enc, x, target, "l2sq", eps=4 / 255, steps=20, restarts=3, generator=torch.Generator().manual_seed(0))
    assert r1.fooled is None and (r3.loss >= r1.loss - 1e-6).all() and (r1.loss > 0).all()
    with torch.no_grad():
        torch.testing.assert_close(l2sq_loss(enc(r3.x_adv), target), r3.loss, atol=1e-4, rtol=1e-4)


def test_apgd_bf16_autocast_runs_and_stays_valid(digits):
    m, x, y = digits
    r = APGD(m, threat=ThreatModel.parse("8/255"), steps=5, restarts=1, precision="bf16").run(x[:16], y[:16])
    assert ((r.x_adv - x[:16]).abs().amax() <= 8 / 255 + 1e-6) and torch.isfinite(r.x_adv).all()


def test_targets_are_the_most_likely_wrong_classes():
    z = torch.tensor([[0.0, 9.0, 5.0, 7.0, 1.0], [3.0, 2.0, 1.0, 0.0, 4.0]])
    y = torch.tensor([1, 0])
    assert [kth_target(z, y, k).tolist() for k in (1, 2, 3)] == [[3, 4], [2, 1], [4, 2]]


# ---------------------------------------------------------------- the cascade


def test_cascade_presets_and_overrides():
    m = mlp(0)
    c = Cascade(m, "aa", eps=4 / 255, steps=7, restarts=2)
    assert c.names == ["apgd-ce", "apgd-t"]
    cfg = c.config()
    assert cfg["iterations"] == 7 and cfg["restarts"] == {"apgd-ce": 2, "apgd-t": 2} and cfg["eps"] == "4/255"
    assert Cascade(m, "apgd-ce,apgd-t", eps=4 / 255).config()["restarts"] == {"apgd-ce": 5, "apgd-t": 1}
    with pytest.raises(ValueError, match="unknown attack 'square'; known: apgd-ce, apgd-dlr, apgd-t, apgd-ce-t, pgd"):
        parse_attack("square")


def test_attack_spec_is_parsed_once_and_carried(monkeypatch):
    import robustclip.attacks.cascade as cascade
    from robustclip.attacks.cascade import AttackSpec
    from robustclip.core import RobustClipError, ThreatModel

    spec = AttackSpec.parse("aa", "4/255", iterations=7, restarts=2)
    assert AttackSpec.parse(spec) is spec and spec.threat == ThreatModel(4 / 255, "linf")
    c = Cascade(mlp(0), spec)
    assert c.spec is spec and c.names == ["apgd-ce", "apgd-t"] and c.eps == 4 / 255
    monkeypatch.setattr(cascade, "make_attack", lambda *a, **k: pytest.fail("config() must not build attacks"))
    cfg = c.config()
    assert (cfg["iterations"], cfg["restarts"], cfg["targets"], cfg["losses"]) == (
        7,
        {"apgd-ce": 2, "apgd-t": 2},
        9,
        {"apgd-ce": "ce", "apgd-t": "dlr-t"},
    )
    for bad, msg in [
        (dict(iterations=0), "--iterations must be a positive integer"),
        (dict(eps=None), "needs --eps"),
        (dict(precision="fp8"), "--precision"),
        (dict(eps="4"), "4/255"),
    ]:
        with pytest.raises(RobustClipError, match=msg):
            AttackSpec.parse("apgd-ce", **{"eps": "4/255", **bad})


def test_apgd_takes_a_threat_model_only(digits):
    "Past the boundary eps and norm travel as one parsed `ThreatModel`: APGD and PGDAttack take nothing else."
    from robustclip.attacks.pgd import PGDAttack

    m, x, y = digits
    a = APGD(m, threat=ThreatModel.parse("8/255"), steps=5, restarts=1)(x[:16], y[:16])
    r = apgd(m, x[:16], y[:16], "ce", eps=8 / 255, steps=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, r.x_adv)  # the object is the function with the threat model's eps and norm
    for cls in (APGD, PGDAttack):
        with pytest.raises(TypeError):
            cls(m, eps=8 / 255)


def test_cascade_worst_case_and_flags_consistent(digits):
    m, x, y = digits
    x, y = x[:64], y[:64]
    r = Cascade(m, "apgd-ce,apgd-t", eps=16 / 255, steps=10).run(x, y, batch_size=25, return_adv=True)
    assert r.complete and r.n == len(y)
    assert (r.robust["apgd-t"] <= r.robust["apgd-ce"]).all() and (r.robust["apgd-ce"] <= r.clean).all()
    assert r.robust_acc < r.clean_acc
    with torch.no_grad():
        assert torch.equal(m(r.x_adv).argmax(1) == y, r.robust_flags)
    # each attack alone breaks no more than the cascade (the cascade is the worst case over them)
    alone = Cascade(m, "apgd-t", eps=16 / 255, steps=10).run(x, y, batch_size=25)
    assert alone.robust_acc >= r.robust_acc - 1e-12


def test_cascade_batches_are_independent_of_order(digits):
    "Resume relies on it: a batch's flags do not depend on which batches ran before it."
    m, x, y = digits
    c = Cascade(m, "apgd-ce", eps=16 / 255, steps=10)
    full = c.run(x[:64], y[:64], batch_size=16)
    got = {}
    part = c.run(x[:64], y[:64], batch_size=16, max_batches=2, on_batch=lambda bf: got.update({bf.batch: bf}))
    assert not part.complete and part.n == 32 and sorted(got) == [0, 1]
    seen = []
    rest = c.run(x[:64], y[:64], batch_size=16, done=got, on_batch=lambda bf: seen.append(bf.batch))
    assert seen == [2, 3] and rest.complete
    assert torch.equal(full.robust_flags, rest.robust_flags) and torch.equal(full.clean, rest.clean)


# ---------------------------------------------------------------- the sanity checks, each provoked


def _checks(fn):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fn()
    return {x.category for x in w if issubclass(x.category, RobustnessWarning)}


class Quantised(nn.Module):
    "Rounds its input to 8 levels: the gradient is zero almost everywhere (gradient masking)."

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m(torch.round(x * 7) / 7)


class Noisy(nn.Module):
    "Dropout that stays on in eval mode: a randomized model."

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return F.dropout(self.m(x), 0.5, training=True)


def test_check_gradient_masking_and_random_noise(digits):
    m, x, y = digits
    got = _checks(lambda: Cascade(Quantised(m), "apgd-ce", eps=32 / 255, steps=5, restarts=1).run(x, y))
    assert GradientWarning in got and RandomNoiseWarning in got


def test_check_randomized_model_and_eps_zero(digits):
    m, x, y = digits
    got = _checks(lambda: Cascade(Noisy(m), "apgd-ce", eps=4 / 255, steps=2, restarts=1).run(x[:32], y[:32]))
    assert RandomizedModelWarning in got and EpsZeroWarning in got


def test_check_train_mode_softmax_and_classes(digits):
    m, x, y = digits
    m.train()
    try:
        assert TrainModeWarning in _checks(lambda: Cascade(m, "apgd-ce", eps=1 / 255, steps=1).run(x[:8], y[:8]))
    finally:
        m.eval()
    assert SoftmaxOutputWarning in _checks(
        lambda: Cascade(nn.Sequential(m, nn.Softmax(1)), "apgd-ce", eps=1 / 255, steps=1).run(x[:8], y[:8])
    )
    m5 = nn.Sequential(m, nn.Linear(10, 5)).eval()
    assert TooFewClassesWarning in _checks(lambda: Cascade(m5, eps=1 / 255, steps=1).run(x[:8], y[:8] % 5))


def test_clean_model_raises_no_check(digits):
    m, x, y = digits
    assert _checks(lambda: Cascade(m, eps=8 / 255, steps=10).run(x[:64], y[:64])) == set()
