"Properties of the attacks over random models, inputs and budgets (hypothesis)."

import os

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings, strategies as st, HealthCheck

from robustclip.attacks.pgd import pgd
from robustclip.attacks.base import lp_norm
from robustclip.attacks.losses import get_objective
from robustclip.attacks.apgd import apgd
from robustclip.attacks.cascade import Cascade

pytestmark = pytest.mark.properties
CASES = (
    1000 if os.environ.get("HYPOTHESIS_PROFILE") == "slow" else 12
)  # `make test-slow`: 1,000 generated cases per attack
SETTINGS = dict(max_examples=CASES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def model_and_data(seed, n=12, c=5, linear=False):
    torch.manual_seed(seed)
    layers = (
        [nn.Flatten(), nn.Linear(27, c)] if linear else [nn.Flatten(), nn.Linear(27, 16), nn.Tanh(), nn.Linear(16, c)]
    )
    m = nn.Sequential(*layers).eval()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(n, 3, 3, 3, generator=g)
    x[: n // 4] = x[: n // 4].round()  # some pixels on the box's faces
    y = torch.randint(0, c, (n,), generator=g)
    return m, x, y


seeds = st.integers(0, 10_000)
eps_linf = st.floats(0, 0.1)


@settings(**SETTINGS)
@given(
    seed=seeds,
    eps=eps_linf,
    norm=st.sampled_from(["linf", "l2"]),
    momentum=st.sampled_from([0.0, 0.9]),
    best=st.booleans(),
    steps=st.integers(0, 6),
)
def test_pgd_stays_in_ball_and_box_and_is_deterministic(seed, eps, norm, momentum, best, steps):
    m, x, y = model_and_data(seed)
    eps = eps * (10 if norm == "l2" else 1)
    run = lambda: pgd(
        m,
        x,
        get_objective("ce").bind(y),
        eps=eps,
        norm=norm,
        steps=steps,
        momentum=momentum,
        best=best,
        generator=torch.Generator().manual_seed(seed),
    )
    xa = run()
    assert torch.isfinite(xa).all() and xa.min() >= 0 and xa.max() <= 1
    assert (lp_norm(xa - x, norm) <= eps + 1e-5).all()
    assert torch.equal(xa, run())


@settings(**SETTINGS)
@given(
    seed=seeds,
    eps=eps_linf,
    norm=st.sampled_from(["linf", "l2"]),
    loss=st.sampled_from(["ce", "dlr", "l2sq"]),
    restarts=st.integers(1, 2),
)
def test_apgd_stays_in_ball_and_box_and_is_deterministic(seed, eps, norm, loss, restarts):
    m, x, y = model_and_data(seed)
    eps = eps * (10 if norm == "l2" else 1)
    target = y if loss != "l2sq" else m(x).detach()
    run = lambda: apgd(
        m,
        x,
        target,
        loss,
        eps=eps,
        norm=norm,
        steps=8,
        restarts=restarts,
        generator=torch.Generator().manual_seed(seed),
    )
    r = run()
    assert torch.isfinite(r.x_adv).all() and r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    assert (lp_norm(r.x_adv - x, norm) <= eps + 1e-5).all()
    assert torch.equal(r.x_adv, run().x_adv)
    if r.fooled is not None:
        with torch.no_grad():
            assert torch.equal(m(r.x_adv).argmax(1) != y, r.fooled)


@settings(**SETTINGS)
@given(seed=seeds, eps=eps_linf, attack=st.sampled_from(["apgd-ce", "apgd-ce,apgd-t", "pgd"]))
def test_cascade_robust_at_most_clean_and_eps0_is_clean(seed, eps, attack):
    m, x, y = model_and_data(seed)
    with torch.no_grad():
        y[::2] = m(x).argmax(1)[::2]  # half the samples correct, so there is something to attack
    r = Cascade(m, attack, eps=eps, steps=5, restarts=1, checks=False).run(x, y, batch_size=5)
    assert (r.robust_flags <= r.clean).all() and r.robust_acc <= r.clean_acc
    r0 = Cascade(m, attack, eps=0.0, steps=5, restarts=1, checks=False).run(x, y, batch_size=5)
    assert torch.equal(r0.robust_flags, r0.clean) and r0.robust_acc == r0.clean_acc
    assert torch.equal(r0.clean, r.clean)


@settings(**SETTINGS)
@given(seed=seeds, e1=eps_linf, e2=eps_linf)
def test_robust_accuracy_does_not_increase_with_eps(seed, e1, e2):
    "On fixed samples of a linear classifier (where APGD finds the worst case), a larger ball never helps the model."
    lo, hi = sorted((e1, e2))
    m, x, y = model_and_data(seed, n=24, c=5, linear=True)
    with torch.no_grad():
        y = m(x).argmax(1)
    acc = lambda e: Cascade(m, "apgd-ce,apgd-t", eps=e, steps=10, restarts=1, checks=False).run(x, y, batch_size=24)
    a, b = acc(lo), acc(hi)
    assert b.robust_acc <= a.robust_acc
