"""The names PEFT gives tformer's layers in models that came from Hugging Face, per architecture.

An adapter file written for a Hugging Face model must name its tensors by that model's layers
(``model.layers.0.self_attn.q_proj``), so that ``peft.PeftModel.from_pretrained`` finds them. Each rule pairs
a tformer layer with its Hugging Face twin; ``part`` says which row slice of tformer's fused q/k/v projection
the Hugging Face layer is (Llama and BERT keep q, k, v apart; GPT-2 fuses them as tformer does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class NameRule:
    """tformer layer ``ours`` <-> Hugging Face layer ``hf`` (``{i}`` is the layer number).

    ``part``: the q/k/v row slice of ``ours`` that ``hf`` is (None: the whole layer).
    ``conv1d``: Hugging Face stores this layer's weight as (in, out) (GPT-2's Conv1D).
    """

    ours: str
    hf: str
    part: str | None = None
    conv1d: bool = False


def _pattern(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)") + r"\Z")


class HFNames:
    """Both directions of one architecture's rules."""

    def __init__(self, rules: list[NameRule]) -> None:
        self.rules = rules
        self._ours = [(_pattern(r.ours), r) for r in rules]
        self._hf = [(_pattern(r.hf), r) for r in rules]

    @staticmethod
    def _fill(template: str, match: re.Match) -> str:
        return template.format(**match.groupdict())

    def to_hf(self, path: str, part: str | None) -> tuple[str, NameRule] | None:
        """The Hugging Face layer of tformer layer ``path`` (or of its row slice ``part``), or None."""
        for pattern, rule in self._ours:
            m = pattern.match(path)
            if m and rule.part == part:
                return self._fill(rule.hf, m), rule
        return None

    def parts(self, path: str) -> list[tuple[str, NameRule]]:
        """The Hugging Face layers that are row slices of tformer layer ``path`` (Llama's q_proj, k_proj, ...)."""
        out = []
        for pattern, rule in self._ours:
            m = pattern.match(path)
            if m and rule.part is not None:
                out.append((self._fill(rule.hf, m), rule))
        return out

    def from_hf(self, hf_path: str) -> tuple[str, NameRule] | None:
        """The tformer layer of a Hugging Face layer name, or None."""
        for pattern, rule in self._hf:
            m = pattern.match(hf_path)
            if m:
                return self._fill(rule.ours, m), rule
        return None


def _llama() -> list[NameRule]:
    L, H = "body.layers.{i}.", "model.layers.{i}."
    return [
        *(NameRule(L + "attn.qkv_proj", H + f"self_attn.{p}_proj", part=p) for p in "qkv"),
        NameRule(L + "attn.o_proj", H + "self_attn.o_proj"),
        *(NameRule(L + f"ffn.{p}", H + f"mlp.{p}_proj") for p in ("gate", "up", "down")),
        NameRule(L + "attn_norm", H + "input_layernorm"),
        NameRule(L + "ffn_norm", H + "post_attention_layernorm"),
        NameRule("body.norm", "model.norm"),
        NameRule("lm_head", "lm_head"),
    ]


def _gpt2() -> list[NameRule]:
    L, H = "body.layers.{i}.", "transformer.h.{i}."
    return [
        NameRule(L + "attn.qkv_proj", H + "attn.c_attn", conv1d=True),
        NameRule(L + "attn.o_proj", H + "attn.c_proj", conv1d=True),
        NameRule(L + "ffn.up", H + "mlp.c_fc", conv1d=True),
        NameRule(L + "ffn.down", H + "mlp.c_proj", conv1d=True),
        NameRule(L + "attn_norm", H + "ln_1"),
        NameRule(L + "ffn_norm", H + "ln_2"),
        NameRule("body.norm", "transformer.ln_f"),
        NameRule("lm_head", "lm_head"),
    ]


def _bert(architecture: str) -> list[NameRule]:
    b = "" if architecture == "BertModel" else "bert."
    L, H = "body.layers.{i}.", b + "encoder.layer.{i}."
    rules = [
        *(
            NameRule(L + "attn.qkv_proj", H + f"attention.self.{n}", part=p)
            for p, n in zip("qkv", ("query", "key", "value"))
        ),
        NameRule(L + "attn.o_proj", H + "attention.output.dense"),
        NameRule(L + "attn_norm", H + "attention.output.LayerNorm"),
        NameRule(L + "ffn.up", H + "intermediate.dense"),
        NameRule(L + "ffn.down", H + "output.dense"),
        NameRule(L + "ffn_norm", H + "output.LayerNorm"),
        NameRule("body.embed.norm", b + "embeddings.LayerNorm"),
        NameRule("pooler.dense", b + "pooler.dense"),
    ]
    if architecture == "BertForMaskedLM":
        rules += [
            NameRule("head.dense", "cls.predictions.transform.dense"),
            NameRule("head.norm", "cls.predictions.transform.LayerNorm"),
            NameRule("head.decoder", "cls.predictions.decoder"),
        ]
    elif architecture in ("BertForSequenceClassification", "BertForTokenClassification"):
        rules.append(NameRule("head.1", "classifier"))
    return rules


def _vit() -> list[NameRule]:
    """transformers 5's in-memory names, which PEFT uses (its files keep the older hub names)."""
    L, H = "layers.{i}.", "vit.layers.{i}."
    return [
        *(NameRule(L + "attn.qkv_proj", H + f"attention.{p}_proj", part=p) for p in "qkv"),
        NameRule(L + "attn.o_proj", H + "attention.o_proj"),
        NameRule(L + "attn_norm", H + "layernorm_before"),
        NameRule(L + "ffn.up", H + "mlp.fc1"),
        NameRule(L + "ffn.down", H + "mlp.fc2"),
        NameRule(L + "ffn_norm", H + "layernorm_after"),
        NameRule("norm", "vit.layernorm"),
        NameRule("head", "classifier"),
    ]


def hf_names(architecture: str | None) -> HFNames | None:
    """The rules of a Hugging Face architecture, or None when tformer has none for it."""
    if architecture in ("LlamaForCausalLM", "MistralForCausalLM"):
        return HFNames(_llama())
    if architecture == "GPT2LMHeadModel":
        return HFNames(_gpt2())
    if architecture is not None and architecture.startswith("Bert"):
        return HFNames(_bert(architecture))
    if architecture == "ViTForImageClassification":
        return HFNames(_vit())
    return None


# Hugging Face classes of one family by tformer head: a model fine-tuned with a new head is that class
_HEAD_CLASSES = {
    "Bert": {
        "none": "BertModel",
        "mlm": "BertForMaskedLM",
        "classification": "BertForSequenceClassification",
        "token_classification": "BertForTokenClassification",
    },
    "ViT": {"none": "ViTModel", "classification": "ViTForImageClassification"},
}


def architecture_with_head(architecture: str, head: str) -> str:
    """The Hugging Face class of ``architecture``'s family with ``head``: ("BertModel", "mlm") -> "BertForMaskedLM"."""
    for family, classes in _HEAD_CLASSES.items():
        if architecture.startswith(family) and head in classes:
            return classes[head]
    return architecture
