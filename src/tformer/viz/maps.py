"""Attention maps of one text (and target) as plain data: token labels plus (layers, heads, T, S) weights.

``compute_maps`` runs the model once through its ``forward`` with ``output_attentions`` (the fused kernels
stay on; see ``tformer.nn.attention_maps``) and returns one ``MapSet`` per kind of attention the model has:
``self`` (decoder-only or encoder-only), or ``encoder``, ``decoder`` and ``cross`` for encoder-decoder
models. Shapes: L selected layers, h selected heads, T queries, S keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tformer.errors import ConfigError, DataError
from tformer.nn.attention_maps import MapSelection

TITLES = {
    "self": "Self-attention",
    "encoder": "Encoder self-attention",
    "decoder": "Decoder self-attention",
    "cross": "Cross-attention (target attends to source)",
}


@dataclass
class MapSet:
    """The maps of one kind of attention.

    Attributes:
        name: ``self``, ``encoder``, ``decoder`` or ``cross``.
        query_tokens / key_tokens: the T row labels and S column labels.
        layers / heads: the model's layer and head indices of the L and h slices.
        weights: (L, h, T, S) float32 attention probabilities; rows sum to 1.
    """

    name: str
    query_tokens: list[str]
    key_tokens: list[str]
    layers: list[int]
    heads: list[int]
    weights: torch.Tensor

    @property
    def title(self) -> str:
        """The heading shown for this kind of attention."""
        return TITLES.get(self.name, self.name)

    @property
    def is_self(self) -> bool:
        """Queries and keys are the same sequence (distances between them mean something)."""
        return self.name != "cross"


@dataclass
class AttentionMaps:
    """Every map set of one input, with the model's shape for the overview."""

    sets: list[MapSet]
    n_layers: int
    n_heads: int
    source_text: str
    target_text: str | None = None

    def get(self, name: str) -> MapSet:
        """The map set called ``name``; a KeyError lists the ones there are."""
        for s in self.sets:
            if s.name == name:
                return s
        raise KeyError(f"no {name!r} maps; available: {', '.join(s.name for s in self.sets)}")


def token_labels(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Each id decoded alone (special tokens kept), for row and column labels."""
    return [tokenizer.decode([i]) for i in ids]


def check_fits(n_tokens: int, limit: int, what: str) -> None:
    """A text longer than the model's context is a one-line error, not a truncated map."""
    if n_tokens > limit:
        raise DataError(
            f"the {what} is {n_tokens} tokens, longer than the model's context of {limit} tokens; shorten it"
        )
    if n_tokens == 0:
        raise DataError(f"the {what} is empty; give at least one token of text")


def source_ids(tokenizer: Any, model: Any, text: str) -> list[int]:
    """The ids the model reads for ``text``: the tokenizer's framing; an encoder-decoder source ends in EOS."""
    ids = tokenizer.encode(text, allowed_special="all")
    eos = tokenizer.eos_token_id
    if model.config.arch == "encoder_decoder" and eos is not None and (not ids or ids[-1] != eos):
        ids = [*ids, eos]  # as tformer's seq2seq training frames a source
    check_fits(len(ids), model.config.max_seq_len, "text")
    return ids


def target_ids(
    tokenizer: Any, model: Any, src: torch.Tensor, target: str | None, max_new_tokens: int
) -> list[int]:
    """Decoder input ids: the start token, then the target's tokens (or the model's greedy output)."""
    cfg = model.config
    start = cfg.decoder_start_token_id
    if start is None:
        raise ConfigError("the model's config has no decoder_start_token_id, so its decoder cannot start")
    if target is not None:
        ids = [start, *tokenizer.encode_text(target, allowed_special="all")]
    else:
        eos = cfg.eos_token_id if cfg.eos_token_id is not None else tokenizer.eos_token_id
        pad = cfg.pad_token_id if cfg.pad_token_id is not None else tokenizer.pad_token_id
        out = model.generate(src, max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=pad)
        ids = out[0].tolist()
        if eos is not None and eos in ids[1:]:
            ids = ids[: ids.index(eos, 1) + 1]
    check_fits(len(ids), cfg.max_seq_len, "target")
    return ids


@torch.no_grad()
def compute_maps(
    model: Any,
    tokenizer: Any,
    text: str,
    *,
    target: str | None = None,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    max_new_tokens: int = 64,
) -> AttentionMaps:
    """The attention maps of ``text`` (an encoder-decoder's source; ``target`` its output, generated
    greedily when None) for the selected layers and heads (default all)."""
    cfg = model.config
    if target is not None and cfg.arch != "encoder_decoder":
        raise ConfigError(f"--target applies to encoder-decoder models; this one is arch={cfg.arch!r}")
    model.eval()
    device = next(model.parameters()).device
    src = source_ids(tokenizer, model, text)
    src_t = torch.tensor([src], device=device)
    opts = dict(output_attentions=True, attention_layers=layers, heads=heads)
    src_tokens = token_labels(tokenizer, src)
    if cfg.arch != "encoder_decoder":
        out = model(src_t, **opts)
        return AttentionMaps(
            [_map_set("self", src_tokens, src_tokens, out.attentions, cfg.n_heads, heads)],
            cfg.n_layers,
            cfg.n_heads,
            text,
        )
    tgt = target_ids(tokenizer, model, src_t, target, max_new_tokens)
    out = model(src_t, decoder_input_ids=torch.tensor([tgt], device=device), **opts)
    tgt_tokens = token_labels(tokenizer, tgt)
    sets = [
        _map_set("encoder", src_tokens, src_tokens, out.encoder_attentions, cfg.n_heads, heads),
        _map_set("decoder", tgt_tokens, tgt_tokens, out.attentions, cfg.n_heads, heads),
        _map_set("cross", tgt_tokens, src_tokens, out.cross_attentions, cfg.n_heads, heads),
    ]
    target_text = target if target is not None else tokenizer.decode(tgt[1:], skip_special_tokens=True)
    return AttentionMaps(sets, max(cfg.n_layers, cfg.n_decoder_layers), cfg.n_heads, text, target_text)


def _map_set(name: str, q_tokens, k_tokens, per_layer, n_heads: int, heads) -> MapSet:
    """Stack the selected layers' (1, h, T, S) maps into (L, h, T, S)."""
    chosen = [(i, w) for i, w in enumerate(per_layer) if w is not None]
    weights = torch.stack([w[0].float().cpu() for _, w in chosen])
    return MapSet(name, q_tokens, k_tokens, [i for i, _ in chosen], selected_heads(n_heads, heads), weights)


def selected_heads(n_heads: int, heads: Sequence[int] | None) -> list[int]:
    """The model's head indices a ``heads=`` selection returns, in order (all heads for None)."""
    if heads is None:
        return list(range(n_heads))
    return list(MapSelection.resolve([0], heads, n_layers=1, n_heads=n_heads).heads)
