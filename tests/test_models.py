"""Binarized layers: binary weights/activations, the straight-through estimators, the input grid."""

import pytest
import torch
from torch import nn

from brevitas.nn import QuantIdentity, QuantLinear

from metabnn.errors import MetabnnError
from metabnn.train.models import BinaryMLP, FloatMLP, build_model
from metabnn.train.quantizers import BinaryActivation, BinaryWeight, Uint8Input


def test_structure_has_batchnorm_after_every_layer():
    model = BinaryMLP([20, 16, 12, 4])
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["QuantIdentity", "QuantLinear", "BatchNorm1d", "QuantIdentity",
                     "QuantLinear", "BatchNorm1d", "QuantIdentity", "QuantLinear", "BatchNorm1d"]
    assert [n for n, _ in model.hidden_weights()] == ["1.weight", "4.weight", "7.weight"]


def test_initialisation_range():
    torch.manual_seed(0)
    w = BinaryMLP([784, 256, 10])[1].weight
    assert w.abs().max() <= 0.05 and w.abs().max() > 0.04


def test_binary_weights_are_sign_with_unit_scale():
    layer = QuantLinear(5, 3, bias=False, weight_quant=BinaryWeight)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.3, -2.0, 0.0, 5.0, -0.01]] * 3))
    qw = layer.quant_weight()
    assert torch.equal(qw.value, torch.tensor([[1.0, -1.0, 1.0, 1.0, -1.0]] * 3))
    assert float(qw.scale) == 1.0


def test_weight_ste_is_identity_and_never_clips():
    layer = QuantLinear(4, 1, bias=False, weight_quant=BinaryWeight)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, -2.0, 0.5, -0.2]]))
    out = layer(torch.ones(1, 4))
    out.sum().backward()
    assert torch.equal(layer.weight.grad, torch.ones(1, 4))  # large |W_h| still gets gradient
    assert torch.equal(layer.weight.detach(), torch.tensor([[3.0, -2.0, 0.5, -0.2]]))


def test_activation_sign_and_ste_zeroed_beyond_one():
    act = QuantIdentity(act_quant=BinaryActivation)
    x = torch.tensor([[-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0]], requires_grad=True)
    y = act(x)
    assert torch.equal(y.detach(), torch.tensor([[-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0]]))
    y.sum().backward()
    assert torch.equal(x.grad, torch.tensor([[0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]]))


def test_uint8_input_is_exact_on_pixel_grid():
    q = QuantIdentity(act_quant=Uint8Input)
    pixels = torch.arange(256, dtype=torch.float32)
    out = q((pixels / 255.0).unsqueeze(0))
    assert torch.allclose(out * 255.0, pixels.unsqueeze(0), atol=1e-4)


def test_forward_outputs_and_float_model():
    x = torch.rand(8, 20)
    assert BinaryMLP([20, 16, 4])(x).shape == (8, 4)
    assert BinaryMLP([20, 16, 4], input_bits=1)(x).shape == (8, 4)
    fm = FloatMLP([20, 16, 4])
    assert fm(x).shape == (8, 4)
    assert not any(isinstance(m, QuantLinear) for m in fm)
    assert isinstance(fm[1], nn.BatchNorm1d)


@pytest.mark.parametrize("widths", [[], [10], [10, 0, 2]])
def test_bad_widths(widths):
    with pytest.raises(MetabnnError):
        build_model("bnn", widths)


def test_bad_kind_and_input_bits():
    with pytest.raises(MetabnnError, match="kind"):
        build_model("cnn", [4, 2])
    with pytest.raises(MetabnnError, match="input_bits"):
        BinaryMLP([4, 2], input_bits=4)


def test_signed_zero_binarizes_to_plus_one():
    layer = QuantLinear(3, 1, bias=False, weight_quant=BinaryWeight)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0, -0.0, -1e-30]]))
    assert layer.quant_weight().value.tolist() == [[1.0, 1.0, -1.0]]
