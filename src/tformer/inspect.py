"""The complexity figures the Transformer literature quotes, made concrete for one config.

Parameters per component, forward FLOPs per token at a sequence length (linear layers O(d^2) per token,
attention scores O(T d) per token, so O(T^2 d) per sequence), KV-cache bytes, and the memory of the
materialised attention-score matrix. Models are built on the ``meta`` device: no weights are allocated,
so even 8B-parameter presets are inspected instantly. An efficient ``attention_kind`` reports what its own
computation costs (``tformer.nn.attention_kinds``: each kind's ``cost``) instead of T^2 scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from tformer.config import ModelConfig
from tformer.nn.attention_kinds import attention_cost

DTYPE_BYTES = {"float32": 4, "fp32": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2}
COMPONENTS = ("embeddings", "positions", "attention", "ffn", "norms", "head")


def _category(module: torch.nn.Module) -> str | None:
    from tformer.nn import (
        Attention,
        FeedForward,
        GatedFeedForward,
        LearnedPositionalEmbedding,
        MoEFeedForward,
        RMSNorm,
        T5RelativeBias,
    )

    if isinstance(module, (LearnedPositionalEmbedding, T5RelativeBias)):
        return "positions"
    if isinstance(module, (torch.nn.LayerNorm, RMSNorm)):
        return "norms"
    if isinstance(module, Attention):
        return "attention"
    if isinstance(module, (FeedForward, GatedFeedForward, MoEFeedForward)):
        return "ffn"
    if isinstance(module, torch.nn.Embedding):
        return "embeddings"
    return None


def parameters_by_component(model: torch.nn.Module) -> dict[str, int]:
    """Unique parameter counts per component, by the type of the module owning each parameter
    (a tied head is counted once, as embeddings; anything outside the blocks and embeddings is head)."""
    counts = dict.fromkeys(COMPONENTS, 0)
    seen: set[int] = set()
    for _, module in model.named_modules():
        category = _category(module)
        for p in module.parameters(recurse=category is not None):
            if id(p) in seen:
                continue
            if category is None and any(p is q for child in module.children() for q in child.parameters()):
                continue  # owned by a child: counted when the child is visited
            seen.add(id(p))
            counts[category or "head"] += p.numel()
    return counts


def linear_params(model: torch.nn.Module) -> int:
    """Weights of the matrix multiplies each token goes through (nn.Linear), the tied LM head included;
    of a mixture of experts only the router and the k experts a token uses."""
    from tformer.nn.moe import MoEFeedForward

    total = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    for m in model.modules():
        if isinstance(m, MoEFeedForward):
            per_expert = sum(
                lin.weight.numel() for lin in m.experts[0].modules() if isinstance(lin, torch.nn.Linear)
            )
            total -= (len(m.experts) - m.top_k) * per_expert
    return total


@dataclass
class Report:
    """Figures for one config at one sequence length, dtype and batch size."""

    config: ModelConfig
    seq_len: int
    dtype: str
    batch_size: int
    params: dict[str, int] = field(default_factory=dict)
    flops_linear: int = 0  # per token, forward
    flops_attention: int = 0  # per token, forward, at seq_len
    kv_bytes_per_token: int = 0  # one sequence
    kv_bytes_full: int = 0  # batch_size sequences at full context (a Performer: its constant-size state)
    scores_bytes: int = 0  # one layer's (B, H, T, T) score matrix, or the kind's score-like tensors

    @property
    def total_params(self) -> int:
        """Parameters of every component together."""
        return sum(self.params.values())

    @property
    def flops_per_token(self) -> int:
        """Forward FLOPs per token: linear layers plus attention at ``seq_len``."""
        return self.flops_linear + self.flops_attention


def attention_flops_per_token(cfg: ModelConfig, seq_len: int) -> int:
    """Q K^T and weights @ V: 2 * 2 * H * D FLOPs per (query, key) pair, per layer.

    Causal self-attention sees on average (T + 1) / 2 keys; bidirectional and cross-attention see T.
    For encoder-decoder models, the figure is per (source token + target token) pair of equal lengths.
    """
    per_pair = 4 * cfg.n_heads * cfg.head_dim
    if cfg.attention_kind != "exact":  # self-attention as the kind computes it; cross-attention stays exact
        encoder = kind_flops_per_token(cfg, seq_len, causal=False) if cfg.arch != "decoder" else 0
        decoder = kind_flops_per_token(cfg, seq_len, causal=True) if cfg.arch != "encoder" else 0
        if cfg.arch == "decoder":
            return int(cfg.n_layers * decoder)
        if cfg.arch == "encoder":
            return int(cfg.n_layers * encoder)
        return int(cfg.n_layers * encoder + cfg.n_decoder_layers * (decoder + per_pair * seq_len))
    causal_keys = mean_causal_keys(seq_len, cfg.sliding_window)
    if cfg.arch == "decoder":
        return int(cfg.n_layers * per_pair * causal_keys)
    if cfg.arch == "encoder":
        return int(cfg.n_layers * per_pair * seq_len)
    return int(cfg.n_layers * per_pair * seq_len + cfg.n_decoder_layers * per_pair * (causal_keys + seq_len))


def kind_flops_per_token(cfg: ModelConfig, seq_len: int, causal: bool) -> float:
    """One self-attention layer of ``cfg.attention_kind``, all heads: its FLOPs per sequence / seq_len."""
    cost = attention_cost(cfg.attention_kind, cfg.attention_params, seq_len, cfg.head_dim, causal)
    return cfg.n_heads * cost.flops / seq_len


def scores_bytes(cfg: ModelConfig, seq_len: int, dtype_bytes: int, batch_size: int) -> int:
    """One layer's attention scores: B x H x T x T, or the score-like tensors of an efficient kind (of the
    decoder's causal self-attention in decoder models, of the encoder's otherwise)."""
    if cfg.attention_kind == "exact":
        return batch_size * cfg.n_heads * seq_len * seq_len * dtype_bytes
    cost = attention_cost(
        cfg.attention_kind, cfg.attention_params, seq_len, cfg.head_dim, cfg.arch == "decoder"
    )
    return batch_size * cfg.n_heads * cost.score_elements * dtype_bytes


def performer_state_bytes(cfg: ModelConfig, batch_size: int) -> int:
    """A causal Performer's decoding state: per layer and head, S (m, D) and z (m), in fp32."""
    layers = cfg.n_decoder_layers if cfg.arch == "encoder_decoder" else cfg.n_layers
    m = cfg.attention_params["nb_features"]
    return layers * batch_size * cfg.n_heads * (m * cfg.head_dim + m) * 4


def mean_causal_keys(seq_len: int, window: int | None = None) -> float:
    """Keys a causal query sees, averaged over positions 0..T-1: (T + 1) / 2, or less with a window W.

    Example: T=4, W=2 -> (1 + 2 + 2 + 2) / 4 = 1.75.
    """
    w = min(seq_len, window or seq_len)
    return (w * (w + 1) / 2 + (seq_len - w) * w) / seq_len


def kv_bytes_per_token(cfg: ModelConfig, dtype_bytes: int) -> int:
    """Decoder self-attention cache: layers x 2 (K and V) x kv_heads x head_dim x bytes."""
    layers = cfg.n_decoder_layers if cfg.arch == "encoder_decoder" else cfg.n_layers
    return layers * 2 * cfg.n_kv_heads * cfg.head_dim * dtype_bytes


def inspect_config(
    cfg: ModelConfig, seq_len: int | None = None, dtype: str = "float32", batch_size: int = 1
) -> Report:
    """Build ``cfg`` on the meta device and compute the report."""
    from tformer.models import build

    if dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPE_BYTES)}")
    seq_len = seq_len or cfg.max_seq_len
    if seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    if cfg.attention_kind == "linformer" and seq_len > cfg.attention_params["max_seq_len"]:
        raise ValueError(
            f"seq_len={seq_len} is longer than the Linformer's max_seq_len={cfg.attention_params['max_seq_len']}"
        )
    nbytes = DTYPE_BYTES[dtype]
    with torch.device("meta"):
        model = build(cfg, init=False)
    report = Report(cfg, seq_len, dtype, batch_size, params=parameters_by_component(model))
    linear = linear_params(model)
    report.flops_linear = 2 * linear
    report.flops_attention = attention_flops_per_token(cfg, seq_len)
    if cfg.arch != "encoder" and cfg.attention_kind == "performer":
        report.kv_bytes_full = performer_state_bytes(cfg, batch_size)  # no per-token cache
    elif cfg.arch != "encoder":
        report.kv_bytes_per_token = kv_bytes_per_token(cfg, nbytes)
        cached = min(seq_len, cfg.sliding_window or seq_len)
        report.kv_bytes_full = report.kv_bytes_per_token * cached * batch_size
    report.scores_bytes = scores_bytes(cfg, seq_len, nbytes, batch_size)
    return report


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M'."""
    for suffix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n:g}{unit}" if isinstance(n, float) else f"{n}{unit}"


def human_bytes(n: int) -> str:
    """A byte count in binary units: 3145728 -> '3.00 MiB'."""
    for suffix, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {suffix}"
    return f"{n} B"


def format_report(r: Report, name: str = "") -> str:
    """The report as an aligned text table."""
    cfg = r.config
    rows: list[tuple[str, str, str]] = []
    total = r.total_params
    for comp in COMPONENTS:
        n = r.params[comp]
        rows.append((f"params: {comp}", f"{n:,}", f"{100 * n / total:5.1f}%" if total else ""))
    rows.append(("params: total", f"{total:,}", human(total)))
    rows.append(("FLOPs/token: linear layers (2N)", f"{r.flops_linear:,}", human(r.flops_linear, "FLOP")))
    rows.append(
        (
            f"FLOPs/token: attention @ T={r.seq_len}",
            f"{r.flops_attention:,}",
            human(r.flops_attention, "FLOP"),
        )
    )
    rows.append(("FLOPs/token: forward total", f"{r.flops_per_token:,}", human(r.flops_per_token, "FLOP")))
    rows.append(
        (
            "FLOPs/sequence: forward",
            f"{r.flops_per_token * r.seq_len:,}",
            human(r.flops_per_token * r.seq_len, "FLOP"),
        )
    )
    if cfg.arch != "encoder" and cfg.attention_kind == "performer":
        rows.append(
            (
                f"Performer state (fp32) x batch {r.batch_size}",
                f"{r.kv_bytes_full:,} B",
                human_bytes(r.kv_bytes_full),
            )
        )
    elif cfg.arch != "encoder":
        rows.append(
            (f"KV cache/token ({r.dtype})", f"{r.kv_bytes_per_token:,} B", human_bytes(r.kv_bytes_per_token))
        )
        ctx = min(r.seq_len, cfg.sliding_window or r.seq_len)
        rows.append(
            (
                f"KV cache @ {ctx} tokens x batch {r.batch_size}",
                f"{r.kv_bytes_full:,} B",
                human_bytes(r.kv_bytes_full),
            )
        )
    rows.append(
        (
            f"attention scores/layer ({cfg.attention_kind}) @ T={r.seq_len} x batch {r.batch_size}",
            f"{r.scores_bytes:,} B",
            human_bytes(r.scores_bytes),
        )
    )
    w0 = max(len(a) for a, _, _ in rows)
    w1 = max(len(b) for _, b, _ in rows)
    header = (
        f"{name or 'model'}: {cfg.arch}, d_model={cfg.d_model}, layers={cfg.n_layers}, heads={cfg.n_heads} "
        f"(kv {cfg.n_kv_heads}), head_dim={cfg.head_dim}, d_ff={cfg.d_ff}, vocab={cfg.vocab_size}, "
        f"context={cfg.max_seq_len}, position={cfg.position}, attention={cfg.attention_kind}"
        + (f" {cfg.attention_params}" if cfg.attention_params else "")
    )
    lines = [header, "-" * (w0 + w1 + 14)]
    lines += [f"{a:<{w0}}  {b:>{w1}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def compare_kinds(
    cfg: ModelConfig, seq_len: int | None = None, dtype: str = "float32", batch_size: int = 1
) -> list[tuple[str, Report | str]]:
    """The report of ``cfg`` with each attention kind at its default parameters (or why a kind does not
    apply, e.g. a causal Linformer)."""
    from tformer.attention_params import ATTENTION_PARAMS
    from tformer.errors import ConfigError

    out: list[tuple[str, Report | str]] = []
    for kind in ATTENTION_PARAMS:
        params = cfg.attention_params if kind == cfg.attention_kind else {}
        if kind == "linformer" and kind != cfg.attention_kind:  # a Linformer built for this length
            params = {"max_seq_len": max(seq_len or cfg.max_seq_len, cfg.max_seq_len)}
        try:
            variant = cfg.replace(attention_kind=kind, attention_params=params)
        except ConfigError as e:
            out.append((kind, str(e).split(";")[0]))
            continue
        out.append((kind, inspect_config(variant, seq_len, dtype, batch_size)))
    return out


def format_kinds(rows: list[tuple[str, Report | str]]) -> str:
    """One line per attention kind: its attention FLOPs per token and score memory per layer."""
    lines = [f"{'attention kind':<14}  {'FLOPs/token (attention)':>24}  {'scores/layer':>14}  parameters"]
    for kind, r in rows:
        if isinstance(r, str):
            lines.append(f"{kind:<14}  {'n/a: ' + r}")
            continue
        params = ", ".join(f"{k}={v}" for k, v in r.config.attention_params.items())
        lines.append(
            f"{kind:<14}  {human(r.flops_attention, 'FLOP'):>24}  {human_bytes(r.scores_bytes):>14}  {params}"
        )
    return "\n".join(lines)
