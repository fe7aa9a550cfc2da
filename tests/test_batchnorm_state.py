"""Per-task BatchNorm population statistics and their use at evaluation."""

import torch

from metabnn.train.batchnorm_state import population_statistics, using_bn_state
from metabnn.train.models import BinaryMLP


def test_population_statistics_are_exact_layer_by_layer():
    torch.manual_seed(0)
    model = BinaryMLP([12, 8, 6, 3])
    images = torch.randint(0, 256, (257, 12), dtype=torch.uint8)
    state = population_statistics(model, images, chunk=50)  # chunking must not matter
    model.eval()
    h = images.float() / 255.0
    for name, module in model.named_children():
        if isinstance(module, torch.nn.BatchNorm1d):
            assert torch.allclose(state[name]["mean"], h.mean(0), atol=1e-5)
            assert torch.allclose(state[name]["var"], h.var(0, unbiased=False), atol=1e-5)
        h = module(h)  # eval mode: the statistics just computed are used downstream


def test_using_bn_state_restores_live_parameters():
    torch.manual_seed(0)
    model = BinaryMLP([12, 8, 3])
    images = torch.randint(0, 256, (64, 12), dtype=torch.uint8)
    state = population_statistics(model, images)
    for s in state.values():
        s["weight"] = s["weight"] * 0 + 2.0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with using_bn_state(model, state):
        assert torch.equal(model[2].weight.detach(), torch.full((8,), 2.0))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_population_statistics_keep_training_mode():
    model = BinaryMLP([4, 3, 2]).train()
    population_statistics(model, torch.randint(0, 256, (10, 4), dtype=torch.uint8))
    assert model.training
