"""Mixture-of-experts models return their load-balancing loss as ``aux_loss`` (Hugging Face's field)."""

import pytest
import torch

import tformer
from tformer.nn.moe import MoEFeedForward, load_balancing_loss


def trainer_value(model: torch.nn.Module) -> torch.Tensor:
    """What the trainer computed before models returned the loss: every MoE module's router logits of the
    forward just run, pooled into one load-balancing loss."""
    moe = [m for m in model.modules() if isinstance(m, MoEFeedForward)]
    return load_balancing_loss([m.router_logits for m in moe], moe[0].top_k)


def pooled_switch_loss(router_inputs: list[torch.Tensor], model: torch.nn.Module, top_k: int) -> torch.Tensor:
    """The formula written out from each router's inputs: E * sum_e f_e * P_e over all layers' tokens."""
    moe = [m for m in model.modules() if isinstance(m, MoEFeedForward)]
    logits = torch.cat([m.router(x.reshape(-1, x.shape[-1])) for m, x in zip(moe, router_inputs)])
    probs = logits.float().softmax(-1)
    E = probs.shape[-1]
    counts = torch.zeros(E)
    for row in probs.topk(top_k, dim=-1).indices:
        counts[row] += 1
    return E * ((counts / (len(probs) * top_k)) * probs.mean(0)).sum()


def capture_router_inputs(model: torch.nn.Module) -> list[torch.Tensor]:
    inputs: list[torch.Tensor] = []
    for m in model.modules():
        if isinstance(m, MoEFeedForward):
            m.register_forward_pre_hook(lambda _m, args: inputs.append(args[0]))
    return inputs


def test_decoder_aux_loss_equals_the_trainers_value_on_a_tiny_mixtral():
    torch.manual_seed(0)
    model = tformer.build("mixtral-tiny", vocab_size=50, max_seq_len=16).train()
    inputs = capture_router_inputs(model)
    out = model(torch.randint(0, 50, (4, 16)))
    assert torch.equal(out.aux_loss, trainer_value(model))
    torch.testing.assert_close(out.aux_loss, pooled_switch_loss(inputs, model, top_k=2))
    assert out.aux_loss.item() >= 1.0 - 1e-6  # 1.0 when balanced, more otherwise
    assert len(out.router_logits) == model.config.n_layers and out.router_logits[0].shape == (64, 4)
    out.aux_loss.backward()  # it trains the routers
    assert all(m.router.weight.grad.abs().sum() > 0 for m in model.modules() if isinstance(m, MoEFeedForward))


def test_aux_loss_with_gradient_checkpointing_and_in_eval_mode():
    torch.manual_seed(0)
    model = tformer.build("mixtral-tiny", vocab_size=50).train()
    ids = torch.randint(0, 50, (2, 9))
    plain = model(ids).aux_loss
    model.set_gradient_checkpointing(True)
    checkpointed = model(ids).aux_loss
    assert torch.equal(checkpointed, plain)
    checkpointed.backward()
    assert model.body.layers[0].ffn.router.weight.grad is not None
    with torch.no_grad():
        assert torch.equal(model.eval()(ids).aux_loss, plain.detach())  # no dropout in the tiny preset


@pytest.mark.parametrize("arch", ["encoder_decoder", "encoder"])
def test_other_families_pool_every_moe_layer_like_the_trainer(arch):
    torch.manual_seed(0)
    name = {"encoder_decoder": "t5-tiny", "encoder": "bert-tiny"}[arch]
    model = tformer.build(name, n_experts=4, n_experts_per_token=2).train()
    ids = torch.randint(0, 500, (2, 7))
    if arch == "encoder_decoder":
        out = model(ids, decoder_input_ids=ids[:, :5])  # encoder and decoder see different token counts
        assert len(out.router_logits) == model.config.n_layers + model.config.n_decoder_layers
    else:
        out = model(ids)
    assert torch.equal(out.aux_loss, trainer_value(model))


@pytest.mark.parametrize("preset", ["gpt-tiny", "t5-tiny", "bert-tiny"])
def test_dense_models_have_no_aux_loss(preset):
    model = tformer.build(preset)
    ids = torch.randint(0, 500, (1, 4))
    out = model(ids, decoder_input_ids=ids) if model.config.arch == "encoder_decoder" else model(ids)
    assert out.aux_loss is None and out.router_logits is None
