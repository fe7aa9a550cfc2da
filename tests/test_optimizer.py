"""The metaplastic update rule, against hand-computed values and torch.optim.Adam."""

import copy
import math

import pytest
import torch

from metabnn.errors import MetabnnError
from metabnn.train.models import BinaryMLP
from metabnn.train.optimizer import MetaplasticAdam, make_optimizer, metaplastic_factor


def one_step(w0, g, meta, lr=0.1, wd=0.0):
    p = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float32))
    opt = MetaplasticAdam([{"params": [p], "meta": meta}], lr=lr, weight_decay=wd)
    p.grad = torch.tensor(g, dtype=torch.float32)
    opt.step()
    return p.detach()


def test_factor_values():
    w = torch.tensor([0.0, 0.5, -1.0, 3.0])
    expected = [1 - math.tanh(1.35 * abs(x)) ** 2 for x in w.tolist()]
    assert torch.allclose(metaplastic_factor(w, 1.35), torch.tensor(expected))
    assert torch.equal(metaplastic_factor(w, 0.0), torch.ones(4))


def test_first_step_hand_computed():
    # Adam's first step is lr * m_hat / (sqrt(v_hat) + eps) = lr * sign(g) (|g| >> eps).
    lr, meta = 0.1, 1.35
    w0 = [0.5, 0.5, -0.8, -0.8]
    g = [1.0, -1.0, -2.0, 2.0]
    w1 = one_step(w0, g, meta, lr=lr)
    f = lambda w: 1 - math.tanh(meta * abs(w)) ** 2  # noqa: E731
    step = lr * 1.0 / (1.0 + 1e-8)
    expected = [
        0.5 - step * f(0.5),   # w > 0 pushed down: toward a flip, attenuated
        0.5 + step,            # w > 0 pushed up: away from zero, plain Adam
        -0.8 + step * f(-0.8),  # w < 0 pushed up: toward a flip, attenuated
        -0.8 - step,           # w < 0 pushed down: away from zero, plain Adam
    ]
    assert w1.tolist() == pytest.approx(expected, rel=1e-6)


def test_toward_flip_is_attenuated_not_blocked():
    w1 = one_step([0.01], [1.0], meta=1.35, lr=0.1)
    # near zero f_meta ~ 1: the weight can still flip
    assert w1.item() < 0


def test_large_weight_is_consolidated():
    w1 = one_step([3.0], [1.0], meta=1.35, lr=0.1)
    f = 1 - math.tanh(1.35 * 3.0) ** 2
    assert w1.item() == pytest.approx(3.0 - 0.1 * f, rel=1e-6)
    assert 3.0 - w1.item() < 0.001


def test_second_step_hand_computed():
    p = torch.nn.Parameter(torch.tensor([1.0]))
    opt = MetaplasticAdam([{"params": [p], "meta": 1.0}], lr=0.01)
    b1, b2, eps = 0.9, 0.999, 1e-8
    m = v = 0.0
    w = 1.0
    for t, g in enumerate([0.5, 0.2], start=1):
        p.grad = torch.tensor([g])
        opt.step()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        update = m * (1 - math.tanh(1.0 * abs(w)) ** 2) if w * m > 0 else m
        w = w - 0.01 / (1 - b1**t) * update / (math.sqrt(v) / math.sqrt(1 - b2**t) + eps)
    assert p.item() == pytest.approx(w, rel=1e-6)


def test_weight_decay_enters_gradient():
    a = one_step([1.0], [0.0], meta=0.0, lr=0.1, wd=0.5)
    assert a.item() == pytest.approx(0.9, rel=1e-6)  # g = 0.5 * w > 0, first step = lr


def test_no_clipping_when_meta_positive():
    p = torch.nn.Parameter(torch.tensor([0.99]))
    opt = MetaplasticAdam([{"params": [p], "meta": 1.35}], lr=0.5)
    for _ in range(5):
        p.grad = torch.tensor([-1.0])
        opt.step()
    assert p.item() > 1.0


@pytest.mark.parametrize("wd", [0.0, 1e-7])
def test_meta_zero_is_adam_bit_for_bit(wd):
    torch.manual_seed(0)
    a = BinaryMLP([32, 24, 24, 10])
    b = copy.deepcopy(a)
    oa = make_optimizer(a, lr=0.005, weight_decay=wd, meta=0.0)
    ob = torch.optim.Adam(b.parameters(), lr=0.005, weight_decay=wd)
    x, y = torch.rand(400, 32), torch.randint(0, 10, (400,))
    for i in range(0, 400, 50):
        for model, opt in ((a, oa), (b, ob)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i:i + 50]), y[i:i + 50]).backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_batchnorm_is_plain_adam_even_with_meta():
    torch.manual_seed(0)
    model = BinaryMLP([16, 8, 4])
    opt = make_optimizer(model, lr=0.01, weight_decay=0.0, meta=2.0)
    metas = [g["meta"] for g in opt.param_groups]
    assert metas[:2] == [2.0, 2.0] and metas[-1] == 0.0
    bn_ids = {id(p) for n, p in model.named_parameters() if n.startswith(("2.", "5."))}
    assert bn_ids <= {id(p) for p in opt.param_groups[-1]["params"]}


def test_per_layer_meta_and_errors():
    model = BinaryMLP([16, 8, 4])
    opt = make_optimizer(model, lr=0.01, weight_decay=0.0, meta=[1.0, 0.0])
    assert [g["meta"] for g in opt.param_groups] == [1.0, 0.0, 0.0]
    with pytest.raises(MetabnnError, match="2 layers"):
        make_optimizer(model, lr=0.01, weight_decay=0.0, meta=[1.0])
    with pytest.raises(MetabnnError, match="negative"):
        make_optimizer(model, lr=0.01, weight_decay=0.0, meta=-1.0)


def test_exp_form_equals_tanh_form():
    w = torch.linspace(-6, 6, 1001)
    for meta in (0.5, 1.35, 4.0):
        ref = 1 - torch.tanh(meta * w.double().abs()) ** 2
        assert torch.allclose(metaplastic_factor(w, meta).double(), ref, atol=1e-7, rtol=1e-5)


@pytest.mark.slow
def test_fused_step_matches_unfused():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(64, 48) * 0.5) for _ in range(2)]
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    fused = MetaplasticAdam([{"params": params, "meta": 1.35}], lr=0.01, weight_decay=1e-4,
                            fused=True)
    plain = MetaplasticAdam([{"params": copies, "meta": 1.35}], lr=0.01, weight_decay=1e-4)
    for _ in range(6):
        grads = [torch.randn_like(p) for p in params]
        for ps, opt in ((params, fused), (copies, plain)):
            for p, g in zip(ps, grads):
                p.grad = g.clone()
            opt.step()
    assert fused.fused, "the fused path fell back to the unfused one"
    for a, b in zip(params, copies):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
        assert not torch.equal(a, b.detach() * 0)  # they moved
