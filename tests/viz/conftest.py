"""Tiny model directories (decoder-only, encoder-only, encoder-decoder) beside a BPE tokenizer whose
vocabulary holds markup such as ``<script>``, so escaping is tested on real tokens."""

from __future__ import annotations

import pytest
import torch

import tformer
from tests.parity.helpers import perturb
from tformer.tokenizers.bpe import ByteLevelBPETokenizer

SCRIPT = "<script>alert(1)</script>"
TEXTS = [
    f"The quick brown fox jumps over the lazy dog. {SCRIPT} " * 4,
    "Le renard brun rapide saute par-dessus le chien paresseux. " * 4,
]
ARCHS = ("decoder", "encoder", "encoder_decoder")


@pytest.fixture(scope="session")
def tokenizer():
    return ByteLevelBPETokenizer.train(TEXTS, vocab_size=320)


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory, tokenizer):
    """arch -> a saved model directory with the tokenizer beside it (sharpened weights: non-uniform maps)."""
    eos = tokenizer.eos_token_id
    out = {}
    for arch in ARCHS:
        torch.manual_seed(0)
        cfg = tformer.ModelConfig(
            arch=arch,
            vocab_size=tokenizer.vocab_size,
            d_model=32,
            n_layers=2,
            n_heads=4,
            max_seq_len=48,
            eos_token_id=eos,
            pad_token_id=eos,
            decoder_start_token_id=eos if arch == "encoder_decoder" else None,
        )
        model = tformer.build(cfg)
        perturb(model, std=0.3)
        d = tmp_path_factory.mktemp(f"viz-{arch}")
        model.save_pretrained(d)
        tokenizer.save(d)
        out[arch] = d
    return out


@pytest.fixture(scope="session")
def models(model_dirs):
    return {arch: tformer.from_pretrained(d) for arch, d in model_dirs.items()}
