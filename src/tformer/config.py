"""Model configuration: one typed, validated, JSON-serialisable dataclass for all three families.

Names follow the paper and the field: ``d_model``, ``n_heads``, ``n_kv_heads``, ``head_dim``, ``d_ff``,
``max_seq_len``, ``vocab_size``. Every choice is a string validated in ``__post_init__``; builders read the
config, components only take plain arguments.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from tformer.attention_params import check_attention_kind
from tformer.errors import ConfigError

Arch = Literal["decoder", "encoder", "encoder_decoder", "vit"]
Position = Literal["learned", "sinusoidal", "rope", "alibi", "t5_relative", "none"]
NormKind = Literal["layernorm", "rmsnorm"]
NormPlacement = Literal["pre", "post"]
Activation = Literal["relu", "gelu", "gelu_tanh", "silu"]
EncoderHead = Literal["none", "mlm", "classification", "token_classification"]
Init = Literal["normal", "xavier", "t5"]
AttnImpl = Literal["sdpa", "reference"]

_LITERAL_FIELDS = {
    "arch": Arch,
    "position": Position,
    "norm": NormKind,
    "norm_placement": NormPlacement,
    "activation": Activation,
    "head": EncoderHead,
    "init": Init,
    "attn_impl": AttnImpl,
}


def from_known_fields(cls: type, data: dict[str, Any], what: str) -> Any:
    """``cls(**data)`` for a config dataclass, rejecting keys that are not its fields with the valid ones."""
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ConfigError(f"unknown {what} keys {unknown}; valid keys: {', '.join(sorted(valid))}")
    return cls(**data)


@dataclass
class ModelConfig:
    """Every architectural choice of a Transformer, validated on construction.

    Derived fields (``n_kv_heads``, ``head_dim``, ``d_ff``, ``n_decoder_layers``) default from the others.
    """

    arch: Arch = "decoder"
    vocab_size: int = 50257
    d_model: int = 768
    n_layers: int = 12
    n_decoder_layers: int | None = None  # encoder-decoder only; defaults to n_layers
    n_heads: int = 12
    n_kv_heads: int | None = None  # None: multi-head; 1: multi-query; in between: grouped-query
    head_dim: int | None = None  # None: d_model // n_heads
    d_ff: int | None = None  # None: 4 * d_model
    max_seq_len: int = 1024

    # positions
    position: Position = "learned"
    position_offset: int = 0  # BART's learned positions start at index 2
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None  # {"rope_type": "llama3", "factor": ..., ...}
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128

    # attention
    attn_bias: bool = True  # bias on the q/k/v projections
    attn_out_bias: bool = True  # bias on the output projection
    attn_scale: float | None = None  # None: 1/sqrt(head_dim); T5 uses 1.0
    sliding_window: int | None = None  # a query sees keys q - W < k <= q
    attn_impl: AttnImpl = "sdpa"
    # how self-attention is computed: "exact" or an efficient kind (tformer.attention_params.ATTENTION_PARAMS)
    attention_kind: str = "exact"
    attention_params: dict[str, Any] = field(default_factory=dict)  # the kind's own, validated and completed

    # blocks
    norm: NormKind = "layernorm"
    norm_eps: float = 1e-5
    norm_bias: bool = True
    norm_placement: NormPlacement = "pre"
    final_norm: bool = True  # a norm after the last block (pre-LN models need it)
    activation: Activation = "gelu"
    gated_ffn: bool = False  # SwiGLU (silu) / GeGLU (gelu): act(x W_gate) * (x W_up)
    ffn_bias: bool = True
    n_experts: int = 0  # > 0: a sparse mixture of experts replaces each feed-forward network
    n_experts_per_token: int = 2  # top-k routing

    # embeddings and output
    embed_scale: bool = False  # multiply token embeddings by sqrt(d_model) (2017 paper, Marian)
    embedding_norm: bool = False  # a norm right after the embeddings (BERT, BART)
    type_vocab_size: int = 0  # BERT segment embeddings
    tie_word_embeddings: bool = True
    scale_decoder_outputs: bool = False  # T5 rescales by d_model**-0.5 before a tied lm_head
    lm_head_bias: bool = False  # BART's final_logits_bias
    head: EncoderHead = "none"  # encoder-only heads
    pooler: bool = False  # BERT pooler (dense + tanh on the first token)
    num_labels: int = 2

    # images (arch="vit"): square images of image_size pixels cut into patch_size patches
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3

    # regularisation and init
    dropout: float = 0.0  # after each sub-layer (before the residual add) and on embeddings
    attn_dropout: float = 0.0  # on attention probabilities
    init: Init = "normal"
    init_std: float = 0.02

    # special tokens
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    decoder_start_token_id: int | None = None

    extra: dict[str, Any] = field(default_factory=dict)  # free-form metadata (e.g. the HF source)

    def __post_init__(self) -> None:
        for name, lit in _LITERAL_FIELDS.items():
            value = getattr(self, name)
            if value not in get_args(lit):
                raise ConfigError(f"{name}={value!r} is not valid; choose one of {', '.join(get_args(lit))}")
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_seq_len"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.n_kv_heads < 1 or self.n_heads % self.n_kv_heads:
            raise ConfigError(
                f"n_heads={self.n_heads} is not divisible by n_kv_heads={self.n_kv_heads}; "
                "n_kv_heads must divide n_heads (1 = multi-query, n_heads = multi-head)"
            )
        if self.head_dim is None:
            if self.d_model % self.n_heads:
                raise ConfigError(
                    f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                    "change one of them or set head_dim explicitly"
                )
            self.head_dim = self.d_model // self.n_heads
        if self.position == "rope" and self.head_dim % 2:
            raise ConfigError(f"rope needs an even head_dim, got {self.head_dim}")
        if self.position == "sinusoidal" and self.d_model % 2:
            raise ConfigError(f"sinusoidal positions need an even d_model, got {self.d_model}")
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        if self.n_decoder_layers is None:
            self.n_decoder_layers = self.n_layers
        for name in ("dropout", "attn_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.sliding_window is not None and self.sliding_window < 1:
            raise ConfigError(f"sliding_window must be a positive integer or None, got {self.sliding_window}")
        self.attention_params = check_attention_kind(
            self.attention_kind,
            self.attention_params,
            arch=self.arch,
            position=self.position,
            sliding_window=self.sliding_window,
            max_seq_len=self.max_seq_len,
        )
        if self.norm_eps <= 0:
            raise ConfigError(f"norm_eps must be positive, got {self.norm_eps}")
        if self.n_experts < 0 or (self.n_experts and not 1 <= self.n_experts_per_token <= self.n_experts):
            raise ConfigError(
                f"n_experts_per_token={self.n_experts_per_token} must be between 1 and n_experts={self.n_experts}"
            )
        if self.arch == "vit":
            self._check_vit()
        elif self.arch != "encoder" and self.head != "none":
            raise ConfigError(f"head={self.head!r} applies only to arch='encoder'")
        if self.head in ("classification", "token_classification") and self.num_labels < 1:
            raise ConfigError(f"num_labels must be >= 1, got {self.num_labels}")

    def _check_vit(self) -> None:
        for name in ("image_size", "patch_size", "num_channels"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.image_size % self.patch_size:
            raise ConfigError(
                f"image_size={self.image_size} is not a multiple of patch_size={self.patch_size}"
            )
        if self.head not in ("none", "classification"):
            raise ConfigError(f"a vit model takes head='none' or 'classification', got {self.head!r}")

    @property
    def n_patches(self) -> int:
        """Patches per image (vit): (image_size / patch_size) ** 2."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def is_causal(self) -> bool:
        """Whether the (decoder) self-attention is causal; encoders are bidirectional."""
        return self.arch in ("decoder", "encoder_decoder")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict, rejecting unknown keys with the list of valid ones."""
        return from_known_fields(cls, data, "config")

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (re-validated); a new attention_kind starts from its own defaults."""
        if changes.get("attention_kind", self.attention_kind) != self.attention_kind:
            changes.setdefault("attention_params", {})
        return self.from_dict({**self.to_dict(), **changes})

    def to_json(self, path: str | Path) -> None:
        """Write the config as indented JSON (``to_dict``'s fields)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> ModelConfig:
        """Read a config written by ``to_json`` (validated, unknown keys rejected)."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    @property
    def attention_scale(self) -> float:
        """The factor on q.k scores: ``attn_scale`` when set (T5: 1.0), else 1/sqrt(head_dim)."""
        return self.attn_scale if self.attn_scale is not None else 1.0 / math.sqrt(self.head_dim)
