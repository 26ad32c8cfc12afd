"""performer (FAVOR+): the error against exact softmax attention falls as nb_features grows, causal outputs
never see later tokens, and decoding with the constant-size state equals the full causal pass."""

import pytest
import torch

import tformer
from tformer.nn.attention_kinds import MaskSpec, PerformerAttention, PerformerState
from tformer.nn.attention_kinds.performer import orthogonal_gaussian

from .helpers import exact_with_mask, padding_mask, qkv


def relative_error(nb_features: int, seed: int, causal: bool) -> float:
    T, D = 64, 16
    q, k, v = (t * s for t, s in zip(qkv(1, 2, 2, T, D, seed=100 + seed), (0.5, 0.5, 1.0)))
    attn = PerformerAttention(D, 2, nb_features=nb_features, seed=seed)
    ours = attn(q, k, v, is_causal=causal, scale=D**-0.5)
    allowed = torch.ones(T, T, dtype=torch.bool)
    ref = exact_with_mask(q, k, v, allowed.tril() if causal else allowed, D**-0.5)
    return float((ours - ref).norm() / ref.norm())


@pytest.mark.parametrize("causal", [False, True])
def test_error_falls_as_the_number_of_features_grows(causal):
    errors = [sum(relative_error(m, s, causal) for s in range(8)) / 8 for m in (16, 64, 256, 1024)]
    assert errors == sorted(errors, reverse=True), errors
    assert errors[0] / errors[-1] > 4, errors  # ~ 1/sqrt(m): 8x in theory
    assert errors[-1] < 0.1, errors


def test_features_are_orthogonal_blocks_of_gaussian_length():
    w = orthogonal_gaussian(40, 16, torch.Generator().manual_seed(0))
    unit = w / w.norm(dim=1, keepdim=True)
    for block in (unit[:16], unit[16:32]):
        torch.testing.assert_close(block @ block.T, torch.eye(16), rtol=0, atol=1e-5)
    assert w.shape == (40, 16) and 2.5 < float(w.norm(dim=1).mean()) < 5.5  # E|N(0, I_16)| ~ 3.9


def test_the_kernel_estimate_is_unbiased():
    """With many features phi(q) . phi(k) -> exp(q . k): a bias (e.g. QR without its sign fix) would stall."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(32, 16, generator=g) * 0.25, torch.randn(32, 16, generator=g) * 0.25
    w = orthogonal_gaussian(65536, 16, torch.Generator().manual_seed(1))

    def phi(x):
        return torch.exp(x @ w.T - x.square().sum(-1, keepdim=True) / 2)

    estimate, exact = phi(q) @ phi(k).T / w.shape[0], torch.exp(q @ k.T)
    assert float((estimate - exact).norm() / exact.norm()) < 0.02


def test_causal_outputs_do_not_depend_on_later_tokens():
    T, t = 50, 23
    q, k, v = qkv(2, 2, 2, T, 8, seed=1)
    attn = PerformerAttention(8, 2, nb_features=32, chunk_size=16)
    out = attn(q, k, v, is_causal=True, scale=0.35)
    q2, k2, v2 = (x.clone() for x in (q, k, v))
    for x in (q2, k2, v2):
        x[:, :, t + 1 :] = torch.randn_like(x[:, :, t + 1 :]) * 3
    out2 = attn(q2, k2, v2, is_causal=True, scale=0.35)
    assert torch.equal(out[:, :, : t + 1], out2[:, :, : t + 1])
    assert not torch.allclose(out[:, :, t + 1 :], out2[:, :, t + 1 :])


def test_chunk_size_does_not_change_the_result():
    q, k, v = qkv(1, 2, 2, 37, 8, seed=2)
    outs = [
        PerformerAttention(8, 2, nb_features=16, chunk_size=c)(q, k, v, is_causal=True, scale=0.3)
        for c in (1, 5, 64)
    ]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], rtol=1e-5, atol=1e-6)


def test_state_decoding_equals_the_full_causal_pass():
    T = 30
    q, k, v = qkv(2, 4, 2, T, 8, seed=3)
    attn = PerformerAttention(8, 4, nb_features=24, chunk_size=8)
    full = attn(q, k, v, is_causal=True, scale=0.35)
    state = attn.make_cache(2, torch.float32, "cpu")
    outs = [attn(q[:, :, :11], k[:, :, :11], v[:, :, :11], is_causal=True, scale=0.35, cache=state)]
    for t in range(11, T):
        outs.append(
            attn(
                q[:, :, t : t + 1],
                k[:, :, t : t + 1],
                v[:, :, t : t + 1],
                is_causal=True,
                scale=0.35,
                cache=state,
            )
        )
    torch.testing.assert_close(torch.cat(outs, 2), full, rtol=1e-5, atol=1e-6)
    assert state.nbytes() == (2 * 4 * 24 * 8 + 2 * 4 * 24) * 4  # constant in the sequence length


def test_padding_keys_add_nothing():
    q, k, v = qkv(2, 2, 2, 12, 8, seed=4)
    real = padding_mask([12, 7], 12)
    attn = PerformerAttention(8, 2, nb_features=32)
    for causal in (False, True):
        spec = MaskSpec.build(torch.arange(12), torch.arange(12), real)
        padded = attn(q, k, v, mask=spec, is_causal=causal, scale=0.3)
        alone = attn(q[1:, :, :7], k[1:, :, :7], v[1:, :, :7], is_causal=causal, scale=0.3)
        torch.testing.assert_close(padded[1:, :, :7], alone, rtol=1e-5, atol=1e-6)


def test_redraw_policy():
    q, k, v = qkv(1, 2, 2, 8, 8)
    fixed, redrawn = (
        PerformerAttention(8, 2, nb_features=8),
        PerformerAttention(8, 2, nb_features=8, redraw_interval=2),
    )
    first = redrawn.features.clone()
    for m in (fixed, redrawn):
        m.train()
        for _ in range(4):
            m(q, k, v, scale=0.3)
    assert torch.equal(fixed.features, PerformerAttention(8, 2, nb_features=8).features)
    assert redrawn.draws == 2 and not torch.equal(redrawn.features, first)
    redrawn.eval()
    before = redrawn.features.clone()
    redrawn(q, k, v, scale=0.3)
    assert torch.equal(redrawn.features, before)  # never in evaluation


def test_decoder_generation_uses_the_state_and_equals_the_full_pass():
    torch.manual_seed(0)
    model = tformer.build(
        "llama-tiny", attention_kind="performer", attention_params={"nb_features": 32, "chunk_size": 4}
    ).eval()
    ids = torch.randint(0, 512, (2, 15))
    with torch.no_grad():
        full = model(ids).logits
        model.setup_caches(2, 15)
        assert all(isinstance(layer.attn.cache, PerformerState) for layer in model.body.layers)
        prefill = model(ids[:, :6], input_pos=torch.arange(6)).logits
        steps = [model(ids[:, t : t + 1], input_pos=torch.tensor([t])).logits for t in range(6, 15)]
        with pytest.raises(ValueError, match="continues at position 15"):
            model(ids[:, :1], input_pos=torch.tensor([3]))
    torch.testing.assert_close(torch.cat([prefill, *steps], 1), full, rtol=1e-5, atol=1e-5)
    greedy = model.generate(ids[:, :5], max_new_tokens=6, do_sample=False)
    uncached = model.generate(ids[:, :5], max_new_tokens=6, do_sample=False, use_cache=False)
    assert torch.equal(greedy, uncached)


def test_beam_search_reorders_the_state():
    torch.manual_seed(1)
    model = tformer.build("gpt-tiny", attention_kind="performer", attention_params={"nb_features": 16}).eval()
    ids = torch.randint(0, 512, (2, 4))
    options = dict(max_new_tokens=5, num_beams=3, do_sample=False)
    assert torch.equal(model.generate(ids, **options), model.generate(ids, use_cache=False, **options))
