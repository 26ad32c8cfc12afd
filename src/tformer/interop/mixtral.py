"""MixtralForCausalLM <-> tformer DecoderLM with a mixture-of-experts feed-forward.

Files name experts ``block_sparse_moe.experts.{e}.w1`` (gate), ``w3`` (up), ``w2`` (down) and the router
``block_sparse_moe.gate``; transformers 5 keeps them fused in memory (``mlp.experts.gate_up_proj`` (E, 2I, H),
``mlp.experts.down_proj`` (E, H, I), ``mlp.gate.weight``), which is accepted too.
"""

from __future__ import annotations

import re
from typing import Any

from tformer.config import ModelConfig
from tformer.interop import llama
from tformer.interop.common import Converter, Tensors, require

MODEL_TYPE = "mixtral"
EXPERT_NAMES = {"w1": "gate", "w3": "up", "w2": "down"}
_EXPERT = r"body\.layers\.(\d+)\.ffn\.experts\.(\d+)\.(gate|up|down)\.weight"
_ROUTER = r"body\.layers\.(\d+)\.ffn\.router\.weight"


def config_from_hf(hf: dict[str, Any], architecture: str) -> ModelConfig:
    """The DecoderLM config of a Mixtral config.json: Mistral's attention with a routed expert FFN."""
    base = llama.config_from_hf(hf, "MistralForCausalLM")  # Mixtral attention is Mistral's
    return base.replace(
        n_experts=require(hf, "num_local_experts"),
        n_experts_per_token=hf.get("num_experts_per_tok", 2),
        extra={"hf_architecture": architecture},
    )


def _split_fused_experts(tensors: Tensors) -> Tensors:
    """``mlp.experts.gate_up_proj`` / ``down_proj`` stacks -> one tensor per expert, in tformer names."""
    out: Tensors = {}
    for name, t in tensors.items():
        m = re.fullmatch(r"model\.layers\.(\d+)\.mlp\.experts\.(gate_up_proj|down_proj)", name)
        if not m:
            out[name] = t
            continue
        layer, kind = m.groups()
        for e in range(t.shape[0]):
            prefix = f"body.layers.{layer}.ffn.experts.{e}"
            if kind == "gate_up_proj":
                gate, up = t[e].chunk(2, dim=0)
                out[f"{prefix}.gate.weight"], out[f"{prefix}.up.weight"] = gate.contiguous(), up.contiguous()
            else:
                out[f"{prefix}.down.weight"] = t[e].contiguous()
    return out


def state_dict_from_hf(tensors: Tensors, config: ModelConfig, architecture: str) -> Tensors:
    """Map Mixtral tensor names onto DecoderLM: experts and router here, the rest as Llama's."""
    moe: Tensors = {}
    rest: Tensors = {}
    for name, t in _split_fused_experts(tensors).items():
        m = re.fullmatch(r"model\.layers\.(\d+)\.block_sparse_moe\.experts\.(\d+)\.(w[123])\.weight", name)
        r = re.fullmatch(r"model\.layers\.(\d+)\.(?:block_sparse_moe|mlp)\.gate\.weight", name)
        if m:
            moe[f"body.layers.{m[1]}.ffn.experts.{m[2]}.{EXPERT_NAMES[m[3]]}.weight"] = t
        elif r:
            moe[f"body.layers.{r[1]}.ffn.router.weight"] = t
        elif name.startswith("body."):
            moe[name] = t
        else:
            rest[name] = t
    return {**llama.state_dict_from_hf(rest, config, architecture), **moe}


def config_to_hf(config: ModelConfig, architecture: str) -> dict[str, Any]:
    """The Mixtral config.json of a DecoderLM with experts: Mistral's fields plus the routing."""
    return {
        **llama.config_to_hf(config, "MistralForCausalLM"),
        "num_local_experts": config.n_experts,
        "num_experts_per_tok": config.n_experts_per_token,
    }


def state_dict_to_hf(tensors: Tensors, config: ModelConfig, architecture: str) -> Tensors:
    """Experts and router in the hub's names (``block_sparse_moe.experts.{e}.w1/w2/w3``), the rest as Llama's."""
    hub = {name: expert for expert, name in EXPERT_NAMES.items()}
    moe: Tensors = {}
    rest: Tensors = {}
    for name, t in tensors.items():
        m, r = re.fullmatch(_EXPERT, name), re.fullmatch(_ROUTER, name)
        if m:
            moe[f"model.layers.{m[1]}.block_sparse_moe.experts.{m[2]}.{hub[m[3]]}.weight"] = t
        elif r:
            moe[f"model.layers.{r[1]}.block_sparse_moe.gate.weight"] = t
        else:
            rest[name] = t
    return {**llama.state_dict_to_hf(rest, config, architecture), **moe}


# the same head/embedding names as Llama's
CONVERTER = Converter(config_from_hf, state_dict_from_hf, llama.refine_config, config_to_hf, state_dict_to_hf)
