"""Generation depends only on its protocols: tformer's models satisfy them, any other object that does can
generate, and no module of ``tformer.generation`` imports ``tformer.models``."""

from __future__ import annotations

import ast
from pathlib import Path

import torch

import tformer
import tformer.generation
from tformer.generation import generate
from tformer.generation.protocols import CausalLM, Seq2SeqLM


class Wrapped:
    """A decoder-only LM that is not a tformer model: it exposes exactly the protocol's members."""

    def __init__(self, model: torch.nn.Module) -> None:
        self._model = model
        self.config, self.device = model.config, model.device
        self.calls: list[int | torch.Tensor] = []

    def __call__(
        self, input_ids, attention_mask=None, position_ids=None, input_pos=None, *, logits_to_keep=0
    ):
        self.calls.append(logits_to_keep)
        return self._model(input_ids, attention_mask, position_ids, input_pos, logits_to_keep=logits_to_keep)

    def setup_caches(self, batch_size, max_seq_len=None, dtype=None, device=None) -> None:
        self._model.setup_caches(batch_size, max_seq_len, dtype, device)

    def reset_caches(self) -> None:
        self._model.reset_caches()

    def clear_caches(self) -> None:
        self._model.clear_caches()

    def reorder_caches(self, index: torch.Tensor) -> None:
        self._model.reorder_caches(index)


def test_tformer_models_satisfy_the_protocols():
    decoder, seq2seq = tformer.build("gpt-tiny"), tformer.build("t5-tiny")
    assert isinstance(decoder, CausalLM) and not isinstance(decoder, Seq2SeqLM)
    assert isinstance(seq2seq, Seq2SeqLM)


def test_any_object_with_the_protocol_generates_the_same_tokens():
    torch.manual_seed(0)
    model = tformer.build("llama-tiny").eval()
    ids = torch.randint(0, 500, (2, 5))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    wrapped = Wrapped(model)
    assert isinstance(wrapped, CausalLM)
    for options in ({}, {"num_beams": 3}, {"use_cache": False}):
        ours = generate(wrapped, ids, mask, max_new_tokens=6, eos_token_id=[], **options)
        assert torch.equal(
            ours, model.generate(ids, attention_mask=mask, max_new_tokens=6, eos_token_id=[], **options)
        )
    assert wrapped.calls and all(k == 1 for k in wrapped.calls)  # only the last position is ever scored


def test_generation_never_imports_models():
    root = Path(tformer.generation.__file__).parent
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            bad = [
                n for n in names if n == "tformer.models" or n.startswith("tformer.models.") or n == "tformer"
            ]
            assert not bad, f"{path.name} imports {bad}: generation sits below tformer.models"
