"""Export building blocks without a training run: thresholds, the integer reference, QONNX."""

import numpy as np
import pytest
import torch

from metabnn.errors import MetabnnError
from metabnn.export.export import binary_weights
from metabnn.export.qonnx_export import bn_nodes, export_qonnx_model
from metabnn.export.reference import reference_predict
from metabnn.export.task_parameters import bn_to_threshold, build_parameters, popcount_thresholds
from metabnn.export.verify import float64_model, torch_predict, verify_task
from metabnn.train.batchnorm_state import population_statistics
from metabnn.train.models import BinaryMLP, batchnorm_layers


def _direct(a, mean, var, gamma, beta, eps, scale):
    """sign(BN(scale * a)) == +1, evaluated directly in float64 (sign(0) = +1)."""
    return gamma * (scale * a - mean) / np.sqrt(var + eps) + beta >= 0


def _check_rule(mean, var, gamma, beta, eps, scale, a_min, a_max):
    thr, flip = bn_to_threshold(mean, var, gamma, beta, eps, scale, a_min, a_max)
    a = np.arange(a_min, a_max + 1, dtype=np.int64)[:, None]
    want = _direct(a.astype(np.float64), mean, var, gamma, beta, eps, scale)
    got = (a >= thr) ^ flip
    assert np.array_equal(got, want)
    assert np.all((thr >= a_min) & (thr <= a_max + 1))
    return thr, flip


def test_threshold_rule_random_including_negative_and_zero_gamma():
    rng = np.random.default_rng(0)
    n = 400
    gamma = rng.normal(size=n)
    gamma[:20] = 0.0  # constant neurons: the sign of beta decides
    mean, beta = rng.normal(scale=20, size=n), rng.normal(size=n)
    var = rng.uniform(0.5, 400, size=n)
    thr, flip = _check_rule(mean, var, gamma, beta, 1e-5, 1.0, -64, 64)
    assert np.array_equal(flip[gamma < 0], np.ones((gamma < 0).sum(), bool))
    assert np.array_equal(flip[:20], beta[:20] < 0)
    # the 8-bit input layer: scale 1/255, pre-activations in units of pixels
    _check_rule(mean / 10, var / 100, gamma, beta, 1e-5, 1 / 255, -255 * 8, 255 * 8)


def test_threshold_equality_edge_is_inclusive_in_both_directions():
    # eps = 0 and var = 4 make every step exact: y == 0 exactly at a == mean
    mean = np.array([3.0, 3.0, -5.0, -5.0, 0.0, 0.0])
    gamma = np.array([1.0, -1.0, 2.0, -0.5, 1.0, -1.0])
    var, beta = np.full(6, 4.0), np.zeros(6)
    thr, flip = _check_rule(mean, var, gamma, beta, 0.0, 1.0, -10, 10)
    assert thr.tolist() == [3, 4, -5, -4, 0, 1] and flip.tolist() == [False, True, False, True, False, True]
    a = mean.astype(np.int64)  # exactly on the threshold: sign(0) = +1 for either sign of gamma
    assert np.all((a >= thr) ^ flip)


def test_thresholds_clip_to_the_reachable_range():
    thr, flip = _check_rule(np.array([1e6, -1e6, 1e6, -1e6]), np.ones(4), np.array([1.0, 1.0, -1.0, -1.0]),
                            np.zeros(4), 1e-5, 1.0, -8, 8)
    assert thr.tolist() == [9, -8, 9, -8]


def test_popcount_thresholds_match_signed_ones():
    n = 9
    thr = np.arange(-n - 3, n + 4)
    pc = np.arange(0, n + 1)
    a = 2 * pc - n
    want = a[:, None] >= thr[None, :]
    got = pc[:, None] >= popcount_thresholds(thr, n)[None, :]
    assert np.array_equal(got, want)


def _random_model(widths, input_bits, seed, n_states=2):
    """A BinaryMLP with hidden weights at init and ``n_states`` random BN states
    (population statistics of random images, random gamma with negatives and zeros)."""
    torch.manual_seed(seed)
    model = BinaryMLP(widths, input_bits)
    images = (torch.rand(600, widths[0]) < 0.3).to(torch.uint8) * torch.randint(0, 256, (600, widths[0]),
                                                                               dtype=torch.uint8)
    states = []
    for _ in range(n_states):
        with torch.no_grad():
            for _, bn in batchnorm_layers(model):
                bn.weight.copy_(torch.randn(bn.num_features))
                bn.weight[0] = 0.0
                bn.bias.copy_(torch.randn(bn.num_features) * 0.5)
        states.append(population_statistics(model, images[torch.randperm(600)[:400]]))
    return model, states, images.numpy()


def _params(model, states):
    names = [n for n, _ in batchnorm_layers(model)]
    eps = [m.eps for _, m in batchnorm_layers(model)]
    return build_parameters(binary_weights(model), names, states, eps, model.input_bits)


@pytest.mark.parametrize("input_bits", [8, 1])
def test_reference_equals_pytorch_on_random_networks(input_bits):
    model, states, images = _random_model([784, 48, 40, 10], input_bits, seed=input_bits)
    params = _params(model, states)
    model64 = float64_model(model)
    for k, state in enumerate(states):
        want, want_logits = torch_predict(model64, state, images)
        got, logits = reference_predict(params, images, k)
        assert np.array_equal(got, want)
        assert np.allclose(logits, want_logits, atol=1e-4)
        assert len(np.unique(want)) > 1  # a network that always answers one class would prove little


def test_reference_rejects_bad_input():
    model, states, images = _random_model([20, 8, 3], 8, seed=3, n_states=1)
    params = _params(model, states)
    with pytest.raises(MetabnnError, match="uint8"):
        reference_predict(params, images.astype(np.float32), 0)
    with pytest.raises(MetabnnError, match="outside"):
        reference_predict(params, images, 1)


@pytest.mark.parametrize("input_bits", [8, 1])
def test_qonnx_graph_per_task_matches_pytorch(input_bits):
    model, states, images = _random_model([784, 24, 16, 10], input_bits, seed=10 + input_bits)
    params = _params(model, states)
    wrapper = export_qonnx_model(model, states[0], 784)
    assert [n["node"] for n in bn_nodes(wrapper)] == [f"BatchNormalization_{i}" for i in range(3)]
    model64 = float64_model(model)
    labels = np.zeros(len(images), dtype=np.int64)
    for k, state in enumerate(states):
        r = verify_task(model, model64, wrapper, params, state, k, images[:300], labels[:300], chunk=128)
        assert r["qonnx"]["agreements"] == r["reference"]["agreements"] == 300, r
        assert r["qonnx"]["max_abs_logit_diff"] < 1e-9
