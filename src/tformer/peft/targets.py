"""Which linear layers (and which of their output rows) a LoRA target name selects.

tformer fuses q, k and v into one ``qkv_proj`` (rows ``[q | k | v]``), so the targets ``q`` and ``v`` adapt
row slices of it; ``qkv`` adapts the whole matrix. Cross-attention has ``q_proj`` and a fused ``kv_proj``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from tformer.errors import ConfigError
from tformer.nn.attention import Attention
from tformer.nn.feedforward import FeedForward, GatedFeedForward

# Hugging Face (and PEFT) layer names -> tformer's target names
ALIASES = {
    "q_proj": "q",
    "query": "q",
    "k_proj": "k",
    "key": "k",
    "v_proj": "v",
    "value": "v",
    "o_proj": "o",
    "out_proj": "o",
    "qkv_proj": "qkv",
    "c_attn": "qkv",
    "c_fc": "up",
    "up_proj": "up",
    "fc1": "up",
    "wi": "up",
    "down_proj": "down",
    "fc2": "down",
    "wo": "down",
    "gate_proj": "gate",
}
# names that mean two different layers in Hugging Face models
AMBIGUOUS = {"c_proj": "o or down", "dense": "o, up or down"}
ATTENTION_TARGETS = ("q", "k", "v", "qkv", "o")
FFN_TARGETS = ("up", "gate", "down")
WHOLE = "default"


@dataclass(frozen=True)
class Site:
    """One adapter: the linear layer at ``module``, its name, and the output rows it updates (None: all).

    An adapter on a whole layer is named ``"default"`` (as in PEFT); one on a row slice by the slice (``"q"``).
    """

    module: str
    name: str = WHOLE
    rows: tuple[int, int] | None = None


def canonical(target: str) -> str:
    """tformer's name for a target (``"q_proj"`` -> ``"q"``), refusing Hugging Face names that are ambiguous."""
    if target in AMBIGUOUS:
        raise ConfigError(f"LoRA target {target!r} is ambiguous in tformer; use {AMBIGUOUS[target]}")
    return ALIASES.get(target, target)


def attention_sites(path: str, attn: Attention, target: str) -> list[Site]:
    """The sites of ``q``, ``k``, ``v``, ``qkv`` or ``o`` in one attention layer at ``path``."""
    qd, kvd = attn.n_heads * attn.head_dim, attn.n_kv_heads * attn.head_dim
    if target == "o":
        return [Site(f"{path}.o_proj")]
    if attn.cross:  # q_proj alone; kv_proj rows [k | v]
        if target == "qkv":
            return [Site(f"{path}.q_proj"), Site(f"{path}.kv_proj")]
        if target == "q":
            return [Site(f"{path}.q_proj")]
        rows = {"k": (0, kvd), "v": (kvd, 2 * kvd)}[target]
        return [Site(f"{path}.kv_proj", target, rows)]
    if target == "qkv":
        return [Site(f"{path}.qkv_proj")]
    rows = {"q": (0, qd), "k": (qd, qd + kvd), "v": (qd + kvd, qd + 2 * kvd)}[target]
    return [Site(f"{path}.qkv_proj", target, rows)]


def _named_linears(model: nn.Module) -> dict[str, nn.Module]:
    """Linear-like layers (nn.Linear, or a quantised layer with in/out_features) by dotted path."""
    return {
        name: m
        for name, m in model.named_modules()
        if name and (isinstance(m, nn.Linear) or (hasattr(m, "in_features") and hasattr(m, "out_features")))
    }


def available_targets(model: nn.Module) -> list[str]:
    """Target names this model offers: the attention/FFN names, then the last name of every other linear."""
    names: list[str] = []
    if any(isinstance(m, Attention) for m in model.modules()):
        names += ATTENTION_TARGETS
    ffns = [m for m in model.modules() if isinstance(m, (FeedForward, GatedFeedForward))]
    if ffns:
        names += [t for t in FFN_TARGETS if any(hasattr(m, t) for m in ffns)]
    structural = {"qkv_proj", "q_proj", "kv_proj", "o_proj", "up", "gate", "down"}
    others = {path.rsplit(".", 1)[-1] for path in _named_linears(model)} - structural
    return names + sorted(others)


def find_sites(model: nn.Module, targets: list[str]) -> list[Site]:
    """Every adapter site the targets select, in module order; a target matching nothing is an error."""
    sites: list[Site] = []
    for raw in targets:
        target = canonical(raw)
        found = _sites_for(model, target)
        if not found:
            raise ConfigError(
                f"LoRA target {raw!r} matches no module of this model; available: "
                f"{', '.join(available_targets(model))} (or a dotted suffix of a linear layer's path)"
            )
        sites += found
    _check_overlaps(sites)
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    return sorted(set(sites), key=lambda s: (order[s.module], s.rows or (0, 0)))


def _sites_for(model: nn.Module, target: str) -> list[Site]:
    if target in ATTENTION_TARGETS:
        return [
            s
            for path, m in model.named_modules()
            if isinstance(m, Attention)
            for s in attention_sites(path, m, target)
        ]
    if target in FFN_TARGETS:
        return [
            Site(f"{path}.{target}")
            for path, m in model.named_modules()
            if isinstance(m, (FeedForward, GatedFeedForward)) and hasattr(m, target)
        ]
    return [Site(path) for path in _named_linears(model) if path == target or path.endswith("." + target)]


def _check_overlaps(sites: list[Site]) -> None:
    """Refuse two adapters on the same rows of one layer (e.g. targets ``qkv`` and ``q``)."""
    by_module: dict[str, list[Site]] = {}
    for s in set(sites):
        by_module.setdefault(s.module, []).append(s)
    for module, group in by_module.items():
        if len(group) > 1 and any(s.rows is None for s in group):
            names = sorted(s.name for s in group)
            raise ConfigError(
                f"LoRA targets {names} overlap on {module}; pick either the whole layer or its parts"
            )
