"""ContinualTrainer.append_tasks: a finished run learns one more task exactly as if it had been in the stream."""

import pytest
import torch

from conftest import run_cli, tiny_args


@pytest.mark.slow
def test_append_equals_longer_stream(tmp_path, mnist_available):
    from metabnn.data import task_from_spec
    from metabnn.errors import MetabnnError
    from metabnn.train.checkpoint import load_checkpoint
    from metabnn.train.continual import ContinualTrainer

    run_cli("train", *tiny_args("data.stream.n_tasks=2", "train.epochs=1"), "--out", str(tmp_path / "two"))
    run_cli("train", *tiny_args("data.stream.n_tasks=1", "train.epochs=1"), "--out", str(tmp_path / "one"))
    two = load_checkpoint(tmp_path / "two")
    one = load_checkpoint(tmp_path / "one")
    cfg = one["config"]
    trainer = ContinualTrainer(cfg, tmp_path / "one", [task_from_spec(s) for s in one["task_specs"]],
                               log=lambda s: None, progress=False)
    trainer.load_state_dict(one)
    trainer.append_tasks([task_from_spec(two["task_specs"][1])])
    metrics = trainer.run()
    for k, v in two["model"].items():
        assert torch.equal(v, trainer.model.state_dict()[k]), k
    assert metrics["tasks"] == ["pmnist-1", "pmnist-2"]
    assert metrics["acc"][0][1] is None and metrics["acc"][1] == two["metrics"]["acc"][1]
    assert len(trainer.bn_states) == 2
    trainer.epoch = 1  # mid-task: adding a task must be refused
    with pytest.raises(MetabnnError, match="middle of task"):
        trainer.append_tasks([task_from_spec(two["task_specs"][1])])
