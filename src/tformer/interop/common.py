"""Shared pieces of the Hugging Face converters: renaming by rules, fusing q/k/v, config helpers."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import torch

from tformer.errors import CheckpointError, ConfigError

Tensors = dict[str, torch.Tensor]

# Hugging Face activation names -> tformer's
ACTIVATIONS = {
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu": "gelu",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}


def activation_from_hf(name: str) -> str:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ConfigError(f"unsupported activation {name!r}; supported: {', '.join(ACTIVATIONS)}") from None


def require(hf: dict[str, Any], key: str) -> Any:
    if key not in hf:
        raise ConfigError(f"Hugging Face config.json lacks {key!r}")
    return hf[key]


def strip_prefix(tensors: Tensors, prefixes: Iterable[str]) -> Tensors:
    """Drop the first matching prefix from every key (e.g. ``transformer.`` in GPT2LMHeadModel files)."""
    out = {}
    for name, t in tensors.items():
        for p in prefixes:
            if name.startswith(p):
                name = name[len(p) :]
                break
        out[name] = t
    return out


Rule = tuple[str, str, Callable[[torch.Tensor], torch.Tensor] | None]


def rename(
    tensors: Tensors, rules: list[Rule], ignore: Iterable[str] = (), source: str = "checkpoint"
) -> Tensors:
    """Rename every tensor by the first regex rule that matches it (with an optional transform).

    A tensor no rule and no ``ignore`` pattern matches is an error naming it.
    Example rule: ``(r"h\\.(\\d+)\\.ln_1\\.(weight|bias)", r"body.layers.\\1.attn_norm.\\2", None)``.
    """
    compiled = [(re.compile(p + r"\Z"), repl, fn) for p, repl, fn in rules]
    ignored = [re.compile(p + r"\Z") for p in ignore]
    out: Tensors = {}
    for name, t in tensors.items():
        for pattern, repl, fn in compiled:
            if pattern.match(name):
                out[pattern.sub(repl, name)] = fn(t) if fn else t
                break
        else:
            if not any(p.match(name) for p in ignored):
                raise CheckpointError(
                    f"{source} has weight {name!r} that tformer cannot map for this architecture"
                )
    return out


def fuse_qkv(tensors: Tensors, n_layers: int, src: str, dst: str, names=("q", "k", "v")) -> Tensors:
    """Concatenate separate q/k/v projections into tformer's fused ``qkv_proj``.

    ``src`` is a pattern with ``{i}`` (layer) and ``{p}`` (projection name), e.g.
    ``"model.layers.{i}.self_attn.{p}_proj"``; ``dst`` has ``{i}``. Weights and biases both.
    """
    out = dict(tensors)
    for i in range(n_layers):
        for kind in ("weight", "bias"):
            keys = [f"{src.format(i=i, p=p)}.{kind}" for p in names]
            present = [k in out for k in keys]
            if not any(present):
                continue
            if not all(present):
                missing = keys[present.index(False)]
                raise CheckpointError(f"checkpoint is missing weight {missing!r}")
            parts = [out.pop(k) for k in keys]
            if len({tuple(t.shape[1:]) for t in parts}) > 1:  # torch.cat would fail without naming a tensor
                shapes = ", ".join(f"{k!r} {tuple(t.shape)}" for k, t in zip(keys, parts))
                raise CheckpointError(f"shape mismatch: cannot fuse {shapes}")
            out[f"{dst.format(i=i)}.{kind}"] = torch.cat(parts, dim=0)
    return out


def drop_tied(tensors: Tensors, name: str, tied: bool) -> Tensors:
    """Remove an output head that the model ties to its embedding (files may or may not store it)."""
    if tied:
        tensors.pop(name, None)
    return tensors


def stores_distinct(tensors: Tensors, head: str, embedding: str) -> bool:
    """Whether a file holds both an output head and the embedding it would be tied to, with different values.

    transformers 5 then leaves the two untied whatever config.json says (e.g. a T5 v1.1 re-saved by it).
    """
    return head in tensors and embedding in tensors and not torch.equal(tensors[head], tensors[embedding])


def merge_alias(tensors: Tensors, alias: str, target: str) -> Tensors:
    """Fold a stored alias of a shared tensor (``encoder.embed_tokens.weight`` of ``shared.weight``) into it.

    The alias supplies the target when the target is absent; an alias with different values is an error.
    """
    if alias not in tensors:
        return tensors
    value = tensors.pop(alias)
    if target not in tensors:
        tensors[target] = value
    elif not torch.equal(tensors[target], value):
        raise CheckpointError(
            f"checkpoint stores {alias!r} with values different from {target!r}; "
            "tformer shares one embedding between them"
        )
    return tensors
