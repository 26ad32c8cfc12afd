"""The attention kinds a model can use and each kind's parameters: typed, validated, JSON-serialisable.

This module sits at the bottom with ``tformer.config`` (which validates ``attention_kind`` and
``attention_params`` with it); the kinds themselves live in ``tformer.nn.attention_kinds``, one module each.
Example: ``ModelConfig(attention_kind="performer", attention_params={"nb_features": 64})`` stores the full
parameter set ``{"nb_features": 64, "redraw_interval": 0, "seed": 0, "chunk_size": 128}``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from tformer.errors import ConfigError


@dataclass(frozen=True)
class ExactParams:
    """Exact softmax attention (reference or SDPA backend, by ``attn_impl``): no parameters."""


@dataclass(frozen=True)
class LocalGlobalParams:
    """Longformer: a sliding window plus per-input global tokens.

    window: keys on each side of a query (bidirectional) or behind it (causal); the query itself is seen too.
    global_projections: global tokens get their own q/k/v projections (Longformer's ``query_global`` ...).
    """

    window: int = 128
    global_projections: bool = False


@dataclass(frozen=True)
class BlockSparseParams:
    """BigBird: blocks of ``block_size`` tokens; each query block sees ``window_blocks`` blocks on each side
    (behind, when causal), the first ``global_blocks`` blocks (which see everything), and ``random_blocks``
    other blocks drawn from ``seed``."""

    block_size: int = 64
    window_blocks: int = 1
    global_blocks: int = 1
    random_blocks: int = 2
    seed: int = 0


@dataclass(frozen=True)
class PerformerParams:
    """Performer (FAVOR+): ``nb_features`` positive orthogonal random features drawn from ``seed``;
    ``redraw_interval`` > 0 redraws them every that many training steps (0: fixed); causal attention runs
    in chunks of ``chunk_size`` queries."""

    nb_features: int = 256
    redraw_interval: int = 0
    seed: int = 0
    chunk_size: int = 128


@dataclass(frozen=True)
class LinformerParams:
    """Linformer: keys and values projected along the sequence to ``k`` rows by learned (k, max_seq_len)
    matrices; ``max_seq_len`` None takes the model's; ``share_kv`` uses one matrix for both."""

    k: int = 256
    max_seq_len: int | None = None
    share_kv: bool = False


# the one list of attention kinds: the config, the nn registry, the CLI and the tests read it
ATTENTION_PARAMS: dict[str, type] = {
    "exact": ExactParams,
    "local_global": LocalGlobalParams,
    "block_sparse": BlockSparseParams,
    "performer": PerformerParams,
    "linformer": LinformerParams,
}
# (field, lowest value) of every integer parameter with a lower bound
_LOWEST = {
    "window": 1,
    "block_size": 1,
    "window_blocks": 0,
    "global_blocks": 0,
    "random_blocks": 0,
    "nb_features": 1,
    "redraw_interval": 0,
    "chunk_size": 1,
    "k": 1,
    "max_seq_len": 1,
}


def parse_attention_params(kind: str, params: dict[str, Any] | None) -> Any:
    """The typed parameters of ``kind`` from a dict (missing keys take their defaults), range-checked.

    Raises ConfigError naming an unknown kind, an unknown key or a value out of range.
    """
    if kind not in ATTENTION_PARAMS:
        raise ConfigError(f"unknown attention_kind {kind!r}; choose one of {', '.join(ATTENTION_PARAMS)}")
    cls = ATTENTION_PARAMS[kind]
    params = dict(params or {})
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        hint = f"its parameters: {', '.join(valid)}" if valid else "it takes none"
        raise ConfigError(f"attention_params {unknown} do not apply to attention_kind={kind!r}; {hint}")
    typed = cls(**params)
    for f in fields(cls):
        value = getattr(typed, f.name)
        if f.type == "bool" and not isinstance(value, bool):
            raise ConfigError(f"attention_params.{f.name} must be true or false, got {value!r}")
        if f.name in _LOWEST and value is not None:
            low = _LOWEST[f.name]
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(
                    f"attention_params.{f.name} must be an integer >= {low} for attention_kind={kind!r}, "
                    f"got {value!r}"
                )
    return typed


def check_attention_kind(
    kind: str,
    params: dict[str, Any] | None,
    *,
    arch: str,
    position: str,
    sliding_window: int | None,
    max_seq_len: int,
) -> dict[str, Any]:
    """Validate a model's attention kind against the rest of its config; return the full parameter dict.

    Additive relative positions (ALiBi, T5 buckets) and Mistral's ``sliding_window`` are defined on a
    materialised score matrix, so they need the exact kind; RoPE works with every kind (it rotates q and k).
    """
    typed = parse_attention_params(kind, params)
    if kind == "exact":
        return {}
    if position in ("alibi", "t5_relative"):
        raise ConfigError(
            f"position={position!r} adds a bias to every query-key score, which attention_kind={kind!r} "
            "never materialises; use attention_kind='exact' or position='rope'/'learned'"
        )
    if sliding_window is not None:
        raise ConfigError(
            f"sliding_window applies to attention_kind='exact'; for a window with attention_kind={kind!r} "
            "use attention_kind='local_global' with attention_params={'window': W}"
        )
    if kind == "linformer":
        if arch != "encoder":
            raise ConfigError(
                f"attention_kind='linformer' is bidirectional only (its projections mix future positions) "
                f"but arch={arch!r} has causal self-attention; use arch='encoder' or another kind"
            )
        if typed.max_seq_len is None:
            typed = dataclasses.replace(typed, max_seq_len=max_seq_len)
    return dataclasses.asdict(typed)
