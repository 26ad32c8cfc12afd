"""Shared pieces of the Hugging Face converters, both directions: the Converter type, renaming by rules (and
the inverted rules of export), fusing and splitting q/k/v, config helpers.

On import, converters take and return name -> tensor dicts whose values may be plain tensors or lazy ones
(``tformer.interop.lazy``): the loader passes lazy tensors, so a conversion only plans what to read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tformer.config import ModelConfig
from tformer.errors import CheckpointError, ConfigError
from tformer.interop.lazy import TensorLike, cat, equal

Tensors = dict[str, TensorLike]

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
    """tformer's name for a Hugging Face activation, or a ConfigError listing the supported ones."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ConfigError(f"unsupported activation {name!r}; supported: {', '.join(ACTIVATIONS)}") from None


# tformer's activation -> the name Hugging Face configs conventionally use for it
ACTIVATION_NAMES = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"}


def activation_to_hf(name: str) -> str:
    """The Hugging Face name of a tformer activation (the inverse of :func:`activation_from_hf`)."""
    if name not in ACTIVATION_NAMES:
        raise ConfigError(f"activation {name!r} has no Hugging Face name")
    return ACTIVATION_NAMES[name]


def special_ids(config: ModelConfig) -> dict[str, Any]:
    """``pad/bos/eos_token_id`` for config.json, None included: an absent key would take the HF class default."""
    return {
        "pad_token_id": config.pad_token_id,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
    }


def require(hf: dict[str, Any], key: str) -> Any:
    """``hf[key]``, or a ConfigError naming the missing key."""
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


@dataclass(frozen=True)
class Transform:
    """A tensor change a rule applies on import (``forward``) and undoes on export (``backward``)."""

    forward: Callable[[torch.Tensor], torch.Tensor]
    backward: Callable[[torch.Tensor], torch.Tensor]


def _transpose(t: torch.Tensor) -> torch.Tensor:
    return t.t().contiguous()


#: GPT-2's Conv1D stores (in, out), the transpose of ``nn.Linear``'s weight: its own inverse.
TRANSPOSE = Transform(_transpose, _transpose)

# (Hugging Face name regex, tformer name with \1-style references, optional transform)
Rule = tuple[str, str, Transform | None]


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
                out[pattern.sub(repl, name)] = fn.forward(t) if fn else t
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
            out[f"{dst.format(i=i)}.{kind}"] = cat(parts, dim=0)
    return out


def split_qkv(
    tensors: Tensors, n_layers: int, src: str, dst: str, sizes: Sequence[int], names=("q", "k", "v")
) -> Tensors:
    """The inverse of :func:`fuse_qkv`: cut each fused ``src`` (with ``{i}``) into rows of ``sizes``, named
    by ``dst`` (with ``{i}`` and ``{p}``). Example sizes for GQA: ``(n_heads * D, n_kv * D, n_kv * D)``."""
    out = dict(tensors)
    for i in range(n_layers):
        for kind in ("weight", "bias"):
            fused = f"{src.format(i=i)}.{kind}"
            if fused not in out:
                continue
            parts = out.pop(fused).split(list(sizes), dim=0)
            for p, part in zip(names, parts):
                out[f"{dst.format(i=i, p=p)}.{kind}"] = part.contiguous()
    return out


def fuse_encoder_decoder_attention(
    tensors: Tensors, config: ModelConfig, self_attn: str, self_fused: str, cross_attn: str, cross_fused: str
) -> Tensors:
    """Fuse q/k/v of every self-attention in both stacks, and k/v of every decoder cross-attention.

    ``self_attn`` / ``self_fused`` are :func:`fuse_qkv` patterns with a ``{stack}`` field as well
    (``"encoder"`` or ``"decoder"``), e.g. ``"{stack}.layers.{i}.self_attn.{p}_proj"``;
    ``cross_attn`` / ``cross_fused`` are plain :func:`fuse_qkv` patterns over the decoder layers.
    """
    for stack, n in (("encoder", config.n_layers), ("decoder", config.n_decoder_layers)):
        # fill {stack} now and keep {i} / {p} for fuse_qkv
        src = self_attn.format(stack=stack, i="{i}", p="{p}")
        tensors = fuse_qkv(tensors, n, src, self_fused.format(stack=stack, i="{i}"))
    return fuse_qkv(tensors, config.n_decoder_layers, cross_attn, cross_fused, names=("k", "v"))


def split_encoder_decoder_attention(
    tensors: Tensors, config: ModelConfig, self_attn: str, self_fused: str, cross_attn: str, cross_fused: str
) -> Tensors:
    """The inverse of :func:`fuse_encoder_decoder_attention`, with the same four patterns."""
    q, kv = config.n_heads * config.head_dim, config.n_kv_heads * config.head_dim
    for stack, n in (("encoder", config.n_layers), ("decoder", config.n_decoder_layers)):
        src = self_fused.format(stack=stack, i="{i}")
        tensors = split_qkv(tensors, n, src, self_attn.format(stack=stack, i="{i}", p="{p}"), (q, kv, kv))
    return split_qkv(tensors, config.n_decoder_layers, cross_fused, cross_attn, (kv, kv), names=("k", "v"))


def add_prefix(tensors: Tensors, prefix: str, keep: Iterable[str] = ()) -> Tensors:
    """The inverse of :func:`strip_prefix`: ``prefix`` before every name except those starting with ``keep``."""
    keep = tuple(keep)
    return {(name if keep and name.startswith(keep) else prefix + name): t for name, t in tensors.items()}


def _parse_pattern(pattern: str) -> list[tuple[str, str]]:
    """A rule's regex as ("text", literal) and ("group", regex) parts; ValueError if it is not that simple."""
    parts: list[tuple[str, str]] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            parts.append(("text", pattern[i + 1]))
            i += 2
        elif c == "(":
            end = pattern.index(")", i)
            if "(" in pattern[i + 1 : end]:
                raise ValueError(f"rule {pattern!r} has a nested group; it cannot be inverted")
            parts.append(("group", pattern[i + 1 : end]))
            i = end + 1
        elif c in ".*+?[]{}|^$":
            raise ValueError(f"rule {pattern!r} uses {c!r} outside a group; it cannot be inverted")
        else:
            parts.append(("text", c))
            i += 1
    return parts


def invert_rule(rule: Rule) -> Rule:
    """The export rule of an import rule: tformer name regex -> Hugging Face name, its transform undone.

    Example: ``(r"h\\.(\\d+)\\.ln_1\\.(weight|bias)", r"body.layers.\\1.attn_norm.\\2", None)`` becomes
    ``(r"body\\.layers\\.(\\d+)\\.attn_norm\\.(weight|bias)", r"h.\\1.ln_1.\\2", None)``.
    """
    pattern, repl, fn = rule
    parts = _parse_pattern(pattern)
    groups = [body for kind, body in parts if kind == "group"]
    order: list[int] = []  # order[j]: the import group that export group j + 1 captures
    inverted = ""
    for k, piece in enumerate(re.split(r"\\(\d)", repl)):
        if k % 2:
            order.append(int(piece))
            inverted += f"({groups[int(piece) - 1]})"
        else:
            inverted += re.escape(piece)
    if sorted(order) != list(range(1, len(groups) + 1)):
        raise ValueError(f"rule {pattern!r} -> {repl!r} does not use each group once; it cannot be inverted")
    back, n = "", 0
    for kind, body in parts:
        if kind == "text":
            back += body
        else:
            n += 1
            back += f"\\{order.index(n) + 1}"
    return inverted, back, None if fn is None else Transform(fn.backward, fn.forward)


def export_names(tensors: Tensors, rules: list[Rule], architecture: str) -> Tensors:
    """Rename tformer tensors to Hugging Face's with the inverted import ``rules`` (first match wins)."""
    return rename(tensors, [invert_rule(r) for r in rules], source=f"the tformer model (as {architecture})")


def drop_tied(tensors: Tensors, name: str, tied: bool) -> Tensors:
    """Remove an output head that the model ties to its embedding (files may or may not store it)."""
    if tied:
        tensors.pop(name, None)
    return tensors


def stores_distinct(tensors: Tensors, head: str, embedding: str) -> bool:
    """Whether a file holds both an output head and the embedding it would be tied to, with different values.

    transformers 5 then leaves the two untied whatever config.json says (e.g. a T5 v1.1 re-saved by it).
    """
    return head in tensors and embedding in tensors and not equal(tensors[head], tensors[embedding])


def untie_stored_head(config: ModelConfig, tensors: Tensors, head: str, *embeddings: str) -> ModelConfig:
    """Untie a tied output head when the file stores it with values different from its embedding.

    transformers 5 decides this from the file, not from config.json. ``embeddings`` are the names the
    embedding may have (``"transformer.wte.weight"``, ``"wte.weight"``); the first one present is compared.
    """
    embedding = next((name for name in embeddings if name in tensors), None)
    if config.tie_word_embeddings and embedding is not None and stores_distinct(tensors, head, embedding):
        return config.replace(tie_word_embeddings=False)
    return config


def merge_alias(tensors: Tensors, alias: str, target: str) -> Tensors:
    """Fold a stored alias of a shared tensor (``encoder.embed_tokens.weight`` of ``shared.weight``) into it.

    The alias supplies the target when the target is absent; an alias with different values is an error.
    """
    if alias not in tensors:
        return tensors
    value = tensors.pop(alias)
    if target not in tensors:
        tensors[target] = value
    elif not equal(tensors[target], value):
        raise CheckpointError(
            f"checkpoint stores {alias!r} with values different from {target!r}; "
            "tformer shares one embedding between them"
        )
    return tensors


ConfigFn = Callable[[dict[str, Any], str], ModelConfig]
ConfigToHfFn = Callable[[ModelConfig, str], dict[str, Any]]
RefineFn = Callable[[ModelConfig, Tensors, str], ModelConfig]
StateDictFn = Callable[[Tensors, ModelConfig, str], Tensors]


def keep_config(config: ModelConfig, tensors: Tensors, architecture: str) -> ModelConfig:
    """The default :attr:`Converter.refine_config`: config.json alone decides."""
    return config


@dataclass(frozen=True)
class Converter:
    """How one Hugging Face family becomes a tformer model; every function takes the HF architecture name.

    Attributes:
        config_from_hf: config.json dict -> ModelConfig.
        state_dict_from_hf: the file's tensors -> tformer's state dict (renamed, fused, tied heads dropped).
        refine_config: adjusts the config from the tensors before the model is built (transformers 5 decides
            some tying from the file rather than config.json).
        config_to_hf: export: ModelConfig -> the config.json dict of the architecture (the fields its
            ``config_from_hf`` reads, so that the two round-trip).
        state_dict_to_hf: export: tformer's unique tensors -> the file's tensors, in Hugging Face's names.
    """

    config_from_hf: ConfigFn
    state_dict_from_hf: StateDictFn
    refine_config: RefineFn = keep_config
    config_to_hf: ConfigToHfFn | None = None
    state_dict_to_hf: StateDictFn | None = None
