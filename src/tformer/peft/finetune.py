"""Fine-tuning helpers: freeze parts of a model, count what trains, copy pretrained weights under a new head,
and layer-wise learning-rate decay.

Freeze specs: ``embeddings``, ``layers:0-3`` (blocks 0..3 of every stack; ``layers:2`` one block),
``all-but-head`` (everything except the task head and BERT's pooler, which feeds it), ``all``.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from tformer.errors import ConfigError

# modules that are the task's output head; BERT's pooler only feeds the classification head, so it counts too
HEAD_MODULES = ("head", "lm_head", "pooler")
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def _stack_offset(name: str, model: nn.Module) -> int:
    """Encoder-decoder models: decoder blocks come after the encoder's in depth."""
    cfg = getattr(model, "config", None)
    return (
        cfg.n_layers
        if cfg is not None and cfg.arch == "encoder_decoder" and name.startswith("decoder.")
        else 0
    )


def layer_of(name: str) -> int | None:
    """The block index in a parameter name: ``"body.layers.3.attn.qkv_proj.weight"`` -> 3; None outside blocks."""
    m = _LAYER.search(name)
    return int(m.group(1)) if m else None


def n_blocks(model: nn.Module) -> int:
    """Blocks per stack (the most any stack has)."""
    found = [layer_of(n) for n, _ in model.named_parameters()]
    return max((i for i in found if i is not None), default=-1) + 1


def is_head(name: str) -> bool:
    """Whether a parameter name belongs to the task head."""
    return name.split(".")[0] in HEAD_MODULES


def is_embedding(name: str) -> bool:
    """Token, position and segment embeddings (``body.embed.*``, ViT's ``embed.*``, a shared ``shared.*``)."""
    parts = name.split(".")
    return "embed" in parts or parts[0] == "shared"


def parse_layers(spec: str, available: int) -> range:
    """``"0-3"`` -> range(0, 4); ``"2"`` -> range(2, 3); a range past the model's blocks is an error."""
    m = re.fullmatch(r"(\d+)(?:-(\d+))?", spec.strip())
    if not m:
        raise ConfigError(f"bad layer range {spec!r}; use e.g. layers:0-3 or layers:2")
    start, stop = int(m.group(1)), int(m.group(2) or m.group(1))
    if stop < start:
        raise ConfigError(f"layer range {spec!r} runs backwards; use layers:{stop}-{start}")
    if stop >= available:
        raise ConfigError(
            f"cannot freeze layers {start}-{stop}: the model has {available} layers (0-{available - 1})"
        )
    return range(start, stop + 1)


def freeze(model: nn.Module, spec: str) -> int:
    """Stop gradients for the part of ``model`` named by ``spec``; returns the trainable parameter count.

    Example: ``freeze(model, "layers:0-3")`` freezes blocks 0..3 of every stack.
    """
    kind, _, arg = spec.partition(":")
    if kind == "embeddings":
        selected = lambda name: is_embedding(name)  # noqa: E731
    elif kind == "layers":
        blocks = set(parse_layers(arg, n_blocks(model)))
        selected = lambda name: layer_of(name) in blocks  # noqa: E731
    elif kind == "all-but-head":
        if not any(is_head(n) for n, _ in model.named_parameters()):
            raise ConfigError("--freeze all-but-head: the model has no task head")
        selected = lambda name: not is_head(name)  # noqa: E731
    elif kind == "all":
        selected = lambda name: True  # noqa: E731
    else:
        raise ConfigError(f"unknown freeze spec {spec!r}; use embeddings, layers:A-B, all-but-head or all")
    for name, p in model.named_parameters():
        if selected(name):
            p.requires_grad_(False)
    return count_trainable(model)[0]


def count_trainable(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) unique parameters (tied weights counted once)."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def describe_trainable(model: nn.Module) -> str:
    """``"trainable parameters: 1,234 of 56,789 (2.17%)"``."""
    trainable, total = count_trainable(model)
    return f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / max(total, 1):.2f}%)"


@torch.no_grad()
def transfer_weights(target: nn.Module, source: nn.Module) -> list[str]:
    """Copy every tensor of ``source`` that ``target`` has with the same name and shape.

    Returns the names of ``target``'s tensors left as initialised (a new or resized head), so a caller can say
    which parts start from scratch.
    """
    src = source.state_dict()
    fresh = []
    for name, t in target.state_dict().items():
        if name in src and tuple(src[name].shape) == tuple(t.shape):
            t.copy_(src[name])
        else:
            fresh.append(name)
    return fresh


def layer_depth(name: str, model: nn.Module, n_layers: int) -> int:
    """Depth for layer-wise learning-rate decay: embeddings 0, block i -> i + 1, everything above -> top."""
    i = layer_of(name)
    if i is not None:
        return i + 1 + _stack_offset(name, model)
    if is_embedding(name):
        return 0
    return n_layers + 1


def layerwise_groups(model: nn.Module, groups: list[dict], decay: float) -> list[dict]:
    """Split optimizer groups by depth, each with ``lr_scale = decay ** (top - depth)`` (Howard & Ruder's
    discriminative rates; ELECTRA's layer-wise decay): the head learns at the full rate, lower blocks slower."""
    if not 0.0 < decay <= 1.0:
        raise ConfigError(f"layer_lr_decay must be in (0, 1], got {decay}")
    cfg = getattr(model, "config", None)
    encoder_decoder = cfg is not None and cfg.arch == "encoder_decoder"
    n_layers = cfg.n_layers + cfg.n_decoder_layers if encoder_decoder else n_blocks(model)
    depth = {id(p): layer_depth(n, model, n_layers) for n, p in model.named_parameters()}
    out = []
    for group in groups:
        by_depth: dict[int, list] = {}
        for p in group["params"]:
            by_depth.setdefault(depth[id(p)], []).append(p)
        for d, params in sorted(by_depth.items()):
            out.append({**group, "params": params, "lr_scale": decay ** (n_layers + 1 - d)})
    return out
