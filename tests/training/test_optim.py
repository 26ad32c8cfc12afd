import math

import pytest
import torch

import tformer
from tformer.training.config import TrainConfig
from tformer.training.optim import (
    build_optimizer,
    cosine_lr,
    lr_at,
    noam_lr,
    param_groups,
    schedules_agree_until,
)


def _names(model, params):
    ids = {id(p) for p in params}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_weight_decay_on_matrices_only():
    model = tformer.build("gpt-tiny")
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    names = _names(model, no_decay["params"])
    assert names and all(("norm" in n or n.endswith("bias")) for n in names)
    # tied embedding / lm_head weight appears exactly once
    total = sum(p.numel() for g in (decay, no_decay) for p in g["params"])
    assert total == model.num_parameters()


def test_embeddings_excluded_from_decay_when_asked():
    model = tformer.build("gpt-tiny")
    embeddings = [m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    assert len(embeddings) == 2  # tokens (tied to the LM head) and learned positions
    for decay_embeddings in (True, False):
        decay, no_decay = param_groups(model, 0.1, decay_embeddings=decay_embeddings)
        group = decay if decay_embeddings else no_decay
        assert all(any(p is e for p in group["params"]) for e in embeddings)


def test_noam_matches_the_paper_formula():
    d, warmup = 512, 4000
    for step in (1, 100, 4000, 10000):
        expected = d**-0.5 * min(step**-0.5, step * warmup**-1.5)
        assert noam_lr(step, d, warmup) == pytest.approx(expected)
    # peak at the end of warmup
    assert noam_lr(warmup, d, warmup) > noam_lr(warmup - 1, d, warmup)
    assert noam_lr(warmup, d, warmup) > noam_lr(warmup + 1, d, warmup)
    cfg = TrainConfig(schedule="noam", lr=2.0, warmup_steps=400)
    assert lr_at(10, cfg, 64) == pytest.approx(2.0 * noam_lr(10, 64, 400))


def test_cosine_warmup_then_decay_to_min():
    lr, min_lr = 1e-3, 1e-4
    assert cosine_lr(1, lr, min_lr, 10, 100) == pytest.approx(1e-4)
    assert cosine_lr(10, lr, min_lr, 10, 100) == pytest.approx(lr)
    assert cosine_lr(55, lr, min_lr, 10, 100) == pytest.approx((lr + min_lr) / 2)
    assert cosine_lr(100, lr, min_lr, 10, 100) == pytest.approx(min_lr)
    assert cosine_lr(500, lr, min_lr, 10, 100) == min_lr
    values = [cosine_lr(s, lr, min_lr, 10, 100) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_constant_schedule_and_horizon():
    cfg = TrainConfig(schedule="constant", lr=0.01, warmup_steps=4)
    assert [lr_at(s, cfg, 64) for s in (1, 4, 50)] == pytest.approx([0.0025, 0.01, 0.01])
    cfg = TrainConfig(lr=1e-3, min_lr=0.0, warmup_steps=0, max_steps=10, decay_steps=20)
    assert lr_at(10, cfg, 64) == pytest.approx(0.5e-3)  # the horizon, not max_steps, sets the decay
    assert math.isclose(lr_at(20, cfg, 64), 0.0, abs_tol=1e-12)


def test_where_schedules_of_two_lengths_part():
    """A cosine horizon that follows max_steps makes two lengths agree only through warm-up; an explicit
    horizon, the constant and the noam schedules do not depend on the length."""
    short, long = TrainConfig(max_steps=60, warmup_steps=10), TrainConfig(max_steps=120, warmup_steps=10)
    assert schedules_agree_until(short, long, 64, 60) == 10
    assert schedules_agree_until(short, long, 64, 8) == 8
    pinned = long.replace(decay_steps=60)
    assert schedules_agree_until(short, pinned, 64, 60) == 60
    for schedule in ("constant", "noam"):
        a, b = short.replace(schedule=schedule), long.replace(schedule=schedule)
        assert schedules_agree_until(a, b, 64, 60) == 60


def test_optimizer_is_adamw_with_configured_betas_and_eps():
    model = tformer.build("gpt-tiny")
    opt = build_optimizer(model, TrainConfig(betas=(0.8, 0.9), eps=1e-6), torch.device("cpu"))
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[0]["betas"] == (0.8, 0.9) and opt.param_groups[0]["eps"] == 1e-6
