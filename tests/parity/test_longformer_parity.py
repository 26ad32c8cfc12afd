"""Longformer parity with Hugging Face: LongformerModel and LongformerForMaskedLM load into an encoder with
attention_kind='local_global' and match with global tokens, padding and lengths not a multiple of the window."""

from __future__ import annotations

import pytest
import torch

from tests.parity.helpers import assert_close_scaled, perturb, right_padded_batch, save_and_load

transformers = pytest.importorskip("transformers")

VOCAB, PAD = 96, 1
ARCHS = ["LongformerModel", "LongformerForMaskedLM"]


def longformer_config(window: int = 4) -> transformers.LongformerConfig:
    """Two layers, a window of ``window`` (window / 2 keys each side), RoBERTa's padding index 1."""
    return transformers.LongformerConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        attention_window=window,
        max_position_embeddings=64 + PAD + 1,
        type_vocab_size=1,
        pad_token_id=PAD,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.manual_seed(0)
    out = {}
    for arch in ARCHS:
        hf = getattr(transformers, arch)(longformer_config()).eval()
        perturb(hf)
        out[arch] = (hf, save_and_load(hf, tmp_path_factory.mktemp(arch)))
    return out


def global_mask(ids: torch.Tensor, positions: list[list[int]]) -> torch.Tensor:
    g = torch.zeros_like(ids)
    for b, pos in enumerate(positions):
        g[b, pos] = 1
    return g


CASES = {  # lengths per row, global positions per row
    "no globals": ([13, 13], [[], []]),
    "globals and padding": ([13, 9, 5], [[0, 7], [0], [0, 1, 2]]),
    "multiple of the window": ([16, 12], [[0, 15], [3]]),
    "longer than a few windows": ([41, 30], [[0, 20, 40], [0]]),
}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("case", list(CASES))
def test_outputs_match(models, arch, case):
    hf, ours = models[arch]
    lengths, globs = CASES[case]
    ids, mask = right_padded_batch(VOCAB, lengths, pad_id=PAD, seed=len(case))
    g = global_mask(ids, globs) if any(globs) else None
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask, global_attention_mask=g)
        got = ours(ids, attention_mask=mask, global_attention_mask=g)
    if arch == "LongformerModel":
        assert_close_scaled(got.last_hidden_state, ref.last_hidden_state, mask)
        assert_close_scaled(got.pooler_output, ref.pooler_output)
    else:
        assert_close_scaled(got.logits, ref.logits, mask)


def test_global_tokens_change_the_outputs(models):
    """The parity above is not vacuous: global tokens (with their own projections) matter."""
    _, ours = models["LongformerModel"]
    ids, mask = right_padded_batch(VOCAB, [20], pad_id=PAD)
    with torch.no_grad():
        plain = ours(ids, attention_mask=mask).last_hidden_state
        with_globals = ours(
            ids, attention_mask=mask, global_attention_mask=global_mask(ids, [[0]])
        ).last_hidden_state
    assert (plain - with_globals).abs().max() > 1e-2


def test_config_is_read(models):
    _, ours = models["LongformerForMaskedLM"]
    cfg = ours.config
    assert cfg.attention_kind == "local_global"
    assert cfg.attention_params == {"window": 2, "global_projections": True}
    assert (cfg.position_offset, cfg.max_seq_len) == (2, 64)


def test_per_layer_windows_and_odd_windows_are_refused(tmp_path):
    from tformer.errors import ConfigError
    from tformer.interop.longformer import one_sided_window

    with pytest.raises(ConfigError, match="differs between layers"):
        one_sided_window({"attention_window": [4, 8]})
    with pytest.raises(ConfigError, match="must be an even integer"):
        one_sided_window({"attention_window": 5})
    assert one_sided_window({"attention_window": [6, 6]}) == 3
