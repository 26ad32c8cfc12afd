"""Freezing, trainable counts, weight transfer under a new head, layer-wise learning-rate groups."""

from __future__ import annotations

import pytest
import torch

import tformer
from tformer.errors import ConfigError
from tformer.peft import count_trainable, describe_trainable, freeze, transfer_weights
from tformer.peft.finetune import layer_of, layerwise_groups


def bert(**overrides):
    torch.manual_seed(0)
    return tformer.build("bert-tiny", n_layers=4, **overrides)


def trainable_names(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_freeze_embeddings():
    model = bert()
    freeze(model, "embeddings")
    frozen = {n for n, _ in model.named_parameters()} - trainable_names(model)
    assert frozen == {n for n, _ in model.named_parameters() if n.startswith("body.embed.")}


def test_freeze_layer_range():
    model = bert()
    freeze(model, "layers:0-2")
    for name, p in model.named_parameters():
        i = layer_of(name)
        assert p.requires_grad == (i is None or i == 3), name


def test_freeze_all_but_head_and_count():
    model = bert(head="classification", num_labels=3)
    n = freeze(model, "all-but-head")
    assert trainable_names(model) == {"head.1.weight", "head.1.bias"}
    assert n == 64 * 3 + 3 == count_trainable(model)[0]
    total = model.num_parameters()
    assert count_trainable(model)[1] == total
    assert describe_trainable(model) == f"trainable parameters: 195 of {total:,} ({100 * 195 / total:.2f}%)"


def test_freeze_errors():
    model = bert()
    with pytest.raises(ConfigError, match=r"cannot freeze layers 2-7: the model has 4 layers \(0-3\)"):
        freeze(model, "layers:2-7")
    with pytest.raises(ConfigError, match="unknown freeze spec 'encoder'"):
        freeze(model, "encoder")
    with pytest.raises(ConfigError, match="runs backwards"):
        freeze(model, "layers:3-1")
    with pytest.raises(ConfigError, match="has no task head"):
        freeze(tformer.build("bert-tiny", head="none"), "all-but-head")


def test_transfer_keeps_the_body_and_names_the_new_head():
    source = bert(head="none", pooler=True)
    target = bert(head="classification", num_labels=5, pooler=True)
    fresh = transfer_weights(target, source)
    assert fresh == ["head.1.weight", "head.1.bias"]
    for name, t in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], t), name


def test_layerwise_groups_scale_lower_blocks_down():
    from tformer.training.optim import param_groups

    model = bert(head="classification", num_labels=2)
    groups = layerwise_groups(model, param_groups(model, 0.1), decay=0.5)
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert scale[id(params["head.1.weight"])] == 1.0
    assert scale[id(params["body.layers.3.attn.qkv_proj.weight"])] == 0.5
    assert scale[id(params["body.layers.0.attn.qkv_proj.weight"])] == 0.5**4
    assert scale[id(params["body.embed.tok.weight"])] == 0.5**5
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert all(g["weight_decay"] in (0.0, 0.1) for g in groups)


def test_the_optimizer_applies_layer_decay():
    from tformer.training.config import TrainConfig
    from tformer.training.optim import build_optimizer, set_lr

    model = bert(head="classification", num_labels=2)
    freeze(model, "embeddings")
    opt = build_optimizer(model, TrainConfig(layer_lr_decay=0.5, fused_optimizer=False), torch.device("cpu"))
    set_lr(opt, 1e-3)
    rates = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert rates[id(params["head.1.weight"])] == pytest.approx(1e-3)
    assert rates[id(params["body.layers.0.ffn.up.weight"])] == pytest.approx(1e-3 * 0.5**4)
    assert id(params["body.embed.tok.weight"]) not in rates  # frozen parameters are not optimised


def test_all_but_head_keeps_the_pooler_that_feeds_the_head():
    model = bert(head="classification", num_labels=2, pooler=True)
    freeze(model, "all-but-head")
    assert trainable_names(model) == {
        "head.1.weight",
        "head.1.bias",
        "pooler.dense.weight",
        "pooler.dense.bias",
    }
