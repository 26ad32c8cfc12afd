import math

import pytest
import torch

from tformer.nn.positions import (
    ALiBiBias,
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEmbedding,
    T5RelativeBias,
    alibi_slopes,
    apply_rotary,
    rope_inverse_frequencies,
    sinusoidal_table,
    t5_relative_bucket,
)


def test_sinusoidal_matches_the_paper_formula():
    d = 16
    table = sinusoidal_table(50, d)
    for pos in (0, 1, 7, 49):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-7)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-7)


def test_sinusoidal_module_is_not_a_parameter_and_indexes_positions():
    emb = SinusoidalPositionalEmbedding(20, 8)
    assert list(emb.parameters()) == [] and "table" not in emb.state_dict()
    out = emb(torch.tensor([[3, 0]]))
    assert torch.equal(out[0, 0], sinusoidal_table(20, 8)[3])


def test_learned_positions_apply_offset():
    emb = LearnedPositionalEmbedding(10, 4, offset=2)
    assert emb.weight.shape == (12, 4)
    assert torch.equal(emb(torch.tensor([[0]]))[0, 0], emb.weight[2])


def test_rope_preserves_norm_and_depends_only_on_relative_position():
    torch.manual_seed(0)
    rope = RotaryEmbedding(8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(pq, pk):
        cq, sq = rope(torch.tensor([[pq]]), torch.float32)
        ck, sk = rope(torch.tensor([[pk]]), torch.float32)
        return (apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum().item()

    assert score(5, 3) == pytest.approx(score(12, 10), rel=1e-5)
    assert score(5, 3) != pytest.approx(score(5, 4), rel=1e-3)
    c, s = rope(torch.tensor([[7]]), torch.float32)
    assert apply_rotary(q, c, s).norm().item() == pytest.approx(q.norm().item(), rel=1e-6)


def test_rope_position_zero_is_identity():
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 3, 1, 8)
    c, s = rope(torch.zeros(2, 1, dtype=torch.long), torch.float32)
    assert torch.allclose(apply_rotary(x, c, s), x)


def test_llama3_rope_scaling_keeps_high_frequencies_and_slows_low_ones():
    base = rope_inverse_frequencies(64, 500000.0)
    scaled = rope_inverse_frequencies(
        64,
        500000.0,
        {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    )
    assert torch.equal(scaled[0], base[0])  # highest frequency untouched
    assert scaled[-1].item() == pytest.approx(base[-1].item() / 8.0)
    with pytest.raises(ValueError, match="unsupported rope scaling"):
        rope_inverse_frequencies(8, 1e4, {"rope_type": "yarn"})


def test_alibi_slopes_for_eight_heads_are_powers_of_half():
    assert torch.allclose(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    assert len(alibi_slopes(12)) == 12 and (alibi_slopes(12) > 0).all()


def test_alibi_bias_is_linear_in_distance():
    bias = ALiBiBias(4)(torch.arange(5), torch.arange(5))
    assert bias.shape == (1, 4, 5, 5)
    slopes = alibi_slopes(4)
    assert bias[0, 1, 4, 1].item() == pytest.approx(-3 * slopes[1].item())
    assert torch.all(bias[0, :, torch.arange(5), torch.arange(5)] == 0)


def test_t5_buckets_bidirectional_and_causal():
    rel = torch.tensor([-200, -20, -1, 0, 1, 20, 200])
    bi = t5_relative_bucket(rel, True, 32, 128)
    assert bi.tolist()[2:5] == [1, 0, 17]
    assert bi[0] == 15 and bi[-1] == 31  # far distances share the last bucket of each side
    causal = t5_relative_bucket(rel, False, 32, 128)
    assert causal[4:].tolist() == [0, 0, 0]  # future keys collapse to bucket 0
    assert causal[2] == 1 and causal[0] == 31


def test_t5_bias_shape_and_sharing():
    mod = T5RelativeBias(3, 8, 16, bidirectional=True)
    b = mod(torch.arange(4), torch.arange(6))
    assert b.shape == (1, 3, 4, 6)
    assert torch.equal(b[0, :, 0, 1], b[0, :, 2, 3])  # same relative distance, same bias
