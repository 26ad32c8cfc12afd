import pytest
import torch

import tformer
from tformer.nn.feedforward import GatedFeedForward
from tformer.nn.moe import MoEFeedForward, load_balancing_loss


def test_single_expert_equals_dense_ffn():
    moe = MoEFeedForward(8, 16, n_experts=1, top_k=1)
    dense = GatedFeedForward(8, 16)
    dense.load_state_dict(moe.experts[0].state_dict())
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(moe(x), dense(x))


def test_moe_matches_per_token_brute_force():
    torch.manual_seed(0)
    moe = MoEFeedForward(8, 16, n_experts=4, top_k=2)
    x = torch.randn(3, 4, 8)
    out = moe(x)
    for b in range(3):
        for t in range(4):
            probs = torch.softmax(moe.router(x[b, t]), -1)
            top = probs.topk(2)
            w = top.values / top.values.sum()
            expected = sum(w[i] * moe.experts[int(e)](x[b, t][None])[0] for i, e in enumerate(top.indices))
            torch.testing.assert_close(out[b, t], expected, rtol=1e-5, atol=1e-6)
    assert moe.router_logits.shape == (12, 4)


def test_invalid_top_k():
    with pytest.raises(ValueError, match="top_k=3 must be between 1 and n_experts=2"):
        MoEFeedForward(8, 16, 2, 3)
    with pytest.raises(tformer.ConfigError, match="n_experts_per_token=5"):
        tformer.ModelConfig(n_experts=4, n_experts_per_token=5)


def test_load_balancing_loss_is_one_when_uniform():
    logits = torch.zeros(10, 4)
    assert load_balancing_loss([logits], top_k=2).item() == pytest.approx(1.0)
    skewed = torch.tensor([[5.0, 0, 0, 0]]).repeat(10, 1)
    assert load_balancing_loss([skewed], top_k=1).item() > 1.5


def test_moe_model_trains_and_counts_active_flops():
    from tformer.inspect import inspect_config

    model = tformer.build("mixtral-tiny")
    model(torch.randint(0, 500, (2, 6))).logits.sum().backward()
    assert model.body.layers[0].ffn.router.weight.grad is not None
    cfg = model.config
    r = inspect_config(cfg, seq_len=8)
    expert = 3 * cfg.d_model * cfg.d_ff
    all_linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert r.flops_linear == 2 * (
        all_linear - cfg.n_layers * (cfg.n_experts - cfg.n_experts_per_token) * expert
    )
