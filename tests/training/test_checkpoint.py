import random

import numpy as np
import pytest
import torch

import tformer
from tformer.errors import CheckpointError
from tformer.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from tformer.training.config import TrainConfig
from tformer.training.metrics import MetricsLog, plot_losses
from tformer.training.optim import build_optimizer


def test_checkpoint_round_trip_loads_with_weights_only(tmp_path):
    model = tformer.build("gpt-tiny", d_model=32, n_heads=2, n_layers=1)
    opt = build_optimizer(model, TrainConfig(), torch.device("cpu"))
    model(torch.randint(0, 512, (2, 8))).logits.sum().backward()
    opt.step()
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(
        path,
        model=model,
        optimizer=opt,
        step=7,
        scheduler={"name": "cosine", "step": 7},
        train_config=TrainConfig().to_dict(),
        trainer_state={"step": 7},
        data_position={"step": 7},
    )
    raw = torch.load(path, weights_only=True)  # no pickled objects anywhere
    assert raw["step"] == 7 and raw["data_position"] == {"step": 7}
    payload = load_checkpoint(path)
    other = tformer.build("gpt-tiny", d_model=32, n_heads=2, n_layers=1)
    other.load_state_dict(payload["model"])
    for a, b in zip(model.parameters(), other.parameters()):
        assert torch.equal(a, b)
    opt2 = build_optimizer(other, TrainConfig(), torch.device("cpu"))
    opt2.load_state_dict(payload["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert not list(tmp_path.glob("ck/.*tmp"))  # the atomic write left no temporary file


def test_rng_states_round_trip():
    state = rng_state()
    draws = (torch.rand(3), random.random(), np.random.rand())
    set_rng_state(state)
    again = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(draws[0], again[0]) and draws[1:] == again[1:]


def test_refuses_files_that_are_not_training_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"a": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not a tformer training checkpoint"):
        load_checkpoint(tmp_path / "x.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "junk.pt")


def test_metrics_log_truncates_and_plots(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in range(1, 6):
        log.append({"split": "train", "step": step, "loss": 5.0 - step})
    log.append({"split": "val", "step": 4, "loss": 1.5})
    log.truncate_after(3)
    assert [r["step"] for r in log.rows()] == [1, 2, 3]
    plot_losses(log.rows(), tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
