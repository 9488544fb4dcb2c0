import math

import pytest
import torch
from torch.nn import functional as F

from dfm_lightning.attacks import l2_pgd
from dfm_lightning.models import create_model


def ce(logits, y):
    return F.cross_entropy(logits, y, reduction="none")


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = create_model("lenet").eval()
    return model, torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))


@pytest.mark.parametrize("eps", [0.5, 2.0])
def test_ball_and_box(setup, eps):
    model, x, y = setup
    adv = l2_pgd(model, x, y, ce, eps=eps, steps=10, step_size=eps / 2)
    assert ((adv - x).flatten(1).norm(dim=1) <= eps + 1e-4).all()
    assert adv.min() >= 0 and adv.max() <= 1
    assert ((adv - x).flatten(1).norm(dim=1) > 0.5 * eps).all()  # it really moved


def test_loss_moves_the_right_way(setup):
    model, x, y = setup
    with torch.no_grad():
        before = ce(model(x), y)
        up = ce(model(l2_pgd(model, x, y, ce, eps=2.0, steps=10, step_size=0.5)), y)
        down = ce(model(l2_pgd(model, x, y, ce, eps=2.0, steps=10, step_size=0.5, maximize=False)), y)
    assert (up > before).all() and (down < before).all()


def test_eps_zero_and_zero_steps_change_nothing(setup):
    model, x, y = setup
    assert torch.equal(l2_pgd(model, x, y, ce, eps=0.0, steps=10, step_size=1.0), x)
    assert torch.equal(l2_pgd(model, x, y, ce, eps=1.0, steps=0, step_size=1.0), x)


def test_unbounded_eps(setup):
    model, x, y = setup
    adv = l2_pgd(model, x, y, ce, eps=math.inf, steps=20, step_size=0.5)
    assert adv.min() >= 0 and adv.max() <= 1 and not torch.equal(adv, x)


def test_weight_grads_untouched(setup):
    model, x, y = setup
    first = next(model.parameters())
    assert all(p.grad is None for p in model.parameters())
    l2_pgd(model, x, y, ce, eps=1.0, steps=3, step_size=0.5)
    assert all(p.grad is None for p in model.parameters())
    first.grad = torch.ones_like(first)
    l2_pgd(model, x, y, ce, eps=1.0, steps=3, step_size=0.5)
    assert torch.equal(first.grad, torch.ones_like(first))


def test_negative_eps_rejected(setup):
    model, x, y = setup
    with pytest.raises(ValueError, match="eps"):
        l2_pgd(model, x, y, ce, eps=-1.0)


def test_inference_mode_is_a_clear_error(setup):
    model, x, y = setup
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        l2_pgd(model, x, y, ce, eps=1.0)


@pytest.mark.parametrize("eps", [1.0, math.inf])
def test_start_continues_a_run(setup, eps):
    model, x, y = setup
    whole = l2_pgd(model, x, y, ce, eps=eps, steps=10, step_size=0.3)
    half = l2_pgd(model, x, y, ce, eps=eps, steps=4, step_size=0.3)
    assert not torch.allclose(half, whole)
    assert torch.allclose(l2_pgd(model, x, y, ce, eps=eps, steps=6, step_size=0.3, start=half), whole, atol=1e-5)
