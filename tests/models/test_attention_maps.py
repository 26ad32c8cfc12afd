"""Attention maps under SDPA equal the reference path's, for every family and position kind."""

import pytest
import torch

import tformer
from tests.parity.helpers import perturb
from tformer.errors import ConfigError
from tformer.models import TransformerModel
from tformer.nn.attention import Attention
from tformer.nn.attention_kinds import make_attention_kind
from tformer.nn.attention_maps import AttentionWeightsUnavailable

# (preset, overrides): every family, every position kind, GQA / MQA, a sliding window shorter than the text
CASES = {
    "gpt2-learned": ("gpt-tiny", {}),
    "gpt-alibi": ("gpt-tiny", {"position": "alibi"}),
    "gpt-mqa-sinusoidal": ("gpt-tiny", {"position": "sinusoidal", "n_kv_heads": 1}),
    "llama-rope-gqa": ("llama-tiny", {}),
    "mistral-sliding-window": ("mistral-tiny", {"sliding_window": 3}),
    "bert-learned": ("bert-tiny", {}),
    "bert-alibi-mqa": ("bert-tiny", {"position": "alibi", "n_kv_heads": 1}),
    "t5-relative": ("t5-tiny", {}),
    "bart-learned": ("bart-tiny", {}),
    "transformer-sinusoidal": ("transformer-tiny", {}),
}


def build(name: str) -> TransformerModel:
    preset, overrides = CASES[name]
    torch.manual_seed(0)
    model = tformer.build(preset, **overrides).eval()
    perturb(model, std=0.3)  # sharper attention than the 0.02 init, so a wrong mask or position shows
    return model


def run(model, ids, mask, **kwargs):
    if model.config.arch == "encoder_decoder":
        dec = ids[:, :5]
        return model(ids, attention_mask=mask, decoder_input_ids=dec, **kwargs)
    return model(ids, attention_mask=mask, **kwargs)


def inputs(vocab: int):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, vocab, (2, 9), generator=g)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0  # right padding in the second row
    return ids, mask


def all_maps(out) -> dict[str, tuple]:
    fields = ("attentions", "cross_attentions", "encoder_attentions")
    return {f: getattr(out, f) for f in fields if getattr(out, f) is not None}


def capture_attention_calls(model) -> list:
    """Record every attention call of the next forward: (module, args, kwargs)."""
    calls = []
    for m in model.modules():
        if isinstance(m, Attention):
            m.register_forward_hook(lambda mod, a, kw, out: calls.append((mod, a, kw)), with_kwargs=True)
    return calls


def maps_in_call_order(out) -> list[torch.Tensor]:
    """The returned maps in the order the layers ran: encoder, then per decoder layer self and cross."""
    order = list(out.encoder_attentions or ())
    for i, w in enumerate(out.attentions):
        order += [w] + ([out.cross_attentions[i]] if out.cross_attentions is not None else [])
    return order


@pytest.mark.parametrize("name", list(CASES))
def test_sdpa_maps_equal_reference_maps_and_leave_outputs_unchanged(name, monkeypatch):
    model = build(name)
    cfg = model.config
    ids, mask = inputs(cfg.vocab_size)
    calls = []  # every attention call of the next forward: (module, args, kwargs)
    for m in model.modules():
        if isinstance(m, Attention):
            m.register_forward_hook(lambda mod, a, kw, out: calls.append((mod, a, kw)), with_kwargs=True)
    sdpa_calls = []
    real = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(
        torch.nn.functional,
        "scaled_dot_product_attention",
        lambda *a, **kw: sdpa_calls.append(1) or real(*a, **kw),
    )
    with torch.no_grad():
        fast = run(model, ids, mask, output_attentions=True)
        monkeypatch.undo()
        plain = run(model, ids, mask).logits
        recorded = calls[: len(sdpa_calls)]
        # the reference backend on the very inputs each layer saw gives the same maps to 1e-6
        model.set_attn_impl("reference")
        reference = [attn(*args, **kwargs)[1] for attn, args, kwargs in recorded]
    # the model kept computing through SDPA (every attention call went there) and its outputs are untouched
    n_attention = cfg.n_layers if cfg.arch != "encoder_decoder" else cfg.n_layers + 2 * cfg.n_decoder_layers
    assert len(sdpa_calls) == n_attention and torch.equal(fast.logits, plain)
    expected = {"attentions"} | (
        {"cross_attentions", "encoder_attentions"} if cfg.arch == "encoder_decoder" else set()
    )
    assert set(all_maps(fast)) == expected
    ours = maps_in_call_order(fast)
    assert len(ours) == len(reference) == n_attention
    for w, ref in zip(ours, reference):
        assert w.shape[:2] == (2, cfg.n_heads)
        torch.testing.assert_close(w, ref, rtol=0, atol=1e-6)
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]), rtol=0, atol=1e-5)
    # real queries give padded source keys no attention (encoder, cross-attention, decoder-only)
    padded = [*(fast.encoder_attentions or ()), *(fast.cross_attentions or ())] or fast.attentions
    for w in padded:
        assert w[1, :, :6, 6:].abs().max() < 1e-30


def test_masks_reach_the_maps():
    """Causal, sliding-window and padding zeros sit where the mask puts them."""
    model = build("mistral-sliding-window")  # window 3: query q sees keys q-2..q
    ids, mask = inputs(model.config.vocab_size)
    with torch.no_grad():
        maps = model(ids, attention_mask=mask, output_attentions=True).attentions
    q, k = torch.arange(9)[:, None], torch.arange(9)[None]
    seen = (k <= q) & (k > q - 3)
    for w in maps:
        assert w[0][:, ~seen].abs().max() < 1e-30 and w[0][:, seen].gt(0).all()
        assert w[1][:, :6, 6:].abs().max() < 1e-30  # padding keys


def test_layer_and_head_selection_bounds_what_is_computed():
    model = build("llama-rope-gqa")
    ids, mask = inputs(model.config.vocab_size)
    with torch.no_grad():
        full = model(ids, attention_mask=mask, output_attentions=True).attentions
        part = model(ids, attention_mask=mask, output_attentions=True, attention_layers=[-1], heads=[3, 0])
    assert part.attentions[0] is None and part.attentions[1].shape == (2, 2, 9, 9)
    torch.testing.assert_close(part.attentions[1], full[1][:, [3, 0]], rtol=0, atol=1e-6)
    assert model(ids, attention_mask=mask).attentions is None


def test_encoder_decoder_selection_applies_to_both_stacks_and_cross():
    model = build("t5-relative")
    ids, mask = inputs(model.config.vocab_size)
    with torch.no_grad():
        out = run(model, ids, mask, output_attentions=True, attention_layers=[1], heads=[2])
    assert out.encoder_attentions[0] is None and out.encoder_attentions[1].shape == (2, 1, 9, 9)
    assert out.attentions[1].shape == (2, 1, 5, 5) and out.cross_attentions[1].shape == (2, 1, 5, 9)
    assert out.cross_attentions[1][1, ..., 6:].abs().max() < 1e-30  # padded source tokens


def test_maps_of_a_cached_step_equal_the_last_row_of_the_full_pass():
    model = build("mistral-sliding-window")
    ids = torch.randint(3, 500, (1, 8))
    with torch.no_grad():
        full = model(ids, output_attentions=True).attentions
        model.setup_caches(1, 16)
        model(ids[:, :7], input_pos=torch.arange(7))
        step = model(ids[:, 7:], input_pos=torch.tensor([7]), output_attentions=True).attentions
        model.clear_caches()
    # the rolling cache keeps the last 3 keys, position p in slot p % 3
    slots = [p % 3 for p in (5, 6, 7)]
    for f, s in zip(full, step):
        assert s.shape == (1, 4, 1, 3)
        torch.testing.assert_close(s[0, :, 0, slots], f[0, :, 7, 5:8], rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"attention_layers": [2]}, r"layer 2 is out of range: the decoder has 2 layers \(0..1\)"),
        ({"heads": [4]}, r"head 4 is out of range: the decoder has 4 heads \(0..3\)"),
    ],
)
def test_selection_out_of_range_is_a_one_line_error(kwargs, message):
    model = build("gpt2-learned")
    with pytest.raises(ConfigError, match=message):
        model(torch.tensor([[1, 2, 3]]), output_attentions=True, **kwargs)


def test_a_layer_without_weights_is_named_before_running():
    model = build("gpt2-learned")
    attn = model.decoder_stack().layers[1].attn
    attn.kind = make_attention_kind("performer", None, d_model=64, n_heads=4, n_kv_heads=4, head_dim=16)
    with pytest.raises(
        AttentionWeightsUnavailable, match="attention kind 'performer' has no attention weights"
    ):
        model(torch.tensor([[1, 2, 3]]), output_attentions=True)
    maps = model(torch.tensor([[1, 2, 3]]), output_attentions=True, attention_layers=[0]).attentions
    assert maps[0].shape == (1, 4, 3, 3) and maps[1] is None
