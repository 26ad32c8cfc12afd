"""Shared pieces of the Hugging Face converters: the Converter type, renaming by rules, fusing q/k/v,
config helpers.

Converters take and return name -> tensor dicts whose values may be plain tensors or lazy ones
(``tformer.interop.lazy``): the loader passes lazy tensors, so a conversion only plans what to read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

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


Rule = tuple[str, str, Callable[[TensorLike], TensorLike] | None]


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
            out[f"{dst.format(i=i)}.{kind}"] = cat(parts, dim=0)
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
    """

    config_from_hf: ConfigFn
    state_dict_from_hf: StateDictFn
    refine_config: RefineFn = keep_config
