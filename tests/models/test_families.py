import pytest
import torch

import tformer
from tformer.models import DecoderLM, EncoderDecoderLM, EncoderModel

DECODERS = ["gpt-tiny", "llama-tiny", "mistral-tiny"]
SEQ2SEQ = ["t5-tiny", "bart-tiny", "transformer-tiny"]


def run(model, ids, **kw):
    if isinstance(model, EncoderDecoderLM):
        return model(ids, decoder_input_ids=ids, **kw)
    return model(ids, **kw)


@pytest.mark.parametrize("preset", DECODERS + SEQ2SEQ)
def test_causal_output_ignores_later_tokens(preset):
    torch.manual_seed(0)
    model = tformer.build(preset).eval()
    ids = torch.randint(0, 500, (2, 10))
    changed = ids.clone()
    changed[:, 6:] = torch.randint(0, 500, (2, 4))
    with torch.no_grad():
        if isinstance(model, EncoderDecoderLM):
            mem = model.encode(ids)
            a, b = model.decode(ids, mem).logits, model.decode(changed, mem).logits
        else:
            a, b = model(ids).logits, model(changed).logits
    torch.testing.assert_close(a[:, :6], b[:, :6], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_encoder_is_bidirectional():
    model = tformer.build("bert-tiny").eval()
    ids = torch.randint(5, 500, (1, 8))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % 500
    with torch.no_grad():
        assert not torch.allclose(model(ids).logits[:, 0], model(changed).logits[:, 0])


@pytest.mark.parametrize("preset", DECODERS + SEQ2SEQ + ["bert-tiny"])
def test_backends_agree(preset):
    torch.manual_seed(0)
    model = tformer.build(preset).eval()
    ids = torch.randint(0, 500, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0
    with torch.no_grad():
        fused = run(model, ids, attention_mask=mask).logits
        model.set_attn_impl("reference")
        ref = run(model, ids, attention_mask=mask).logits
    torch.testing.assert_close(fused[0], ref[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused[1, :6], ref[1, :6], rtol=1e-5, atol=1e-5)


def test_output_attentions_from_reference_path():
    model = tformer.build("t5-tiny").eval()
    ids = torch.randint(0, 500, (1, 5))
    out = model(ids, decoder_input_ids=ids[:, :3], output_attentions=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (1, 4, 3, 3)
    assert out.cross_attentions[0].shape == (1, 4, 3, 5)


@pytest.mark.parametrize(
    "head, shape",
    [("none", None), ("mlm", (2, 6, 512)), ("classification", (2, 3)), ("token_classification", (2, 6, 3))],
)
def test_encoder_heads(head, shape):
    model = tformer.build("bert-tiny", head=head, num_labels=3, pooler=head != "mlm").eval()
    assert isinstance(model, EncoderModel)
    out = model(torch.randint(0, 500, (2, 6)), token_type_ids=torch.zeros(2, 6, dtype=torch.long))
    assert out.last_hidden_state.shape == (2, 6, 64)
    assert (out.logits is None) if shape is None else out.logits.shape == shape
    if head != "mlm":
        assert out.pooler_output.shape == (2, 64)


def test_weight_tying_on_and_off():
    tied = tformer.build("gpt-tiny")
    assert tied.lm_head.weight is tied.body.embed.tok.weight
    untied = tformer.build("gpt-tiny", tie_word_embeddings=False)
    assert untied.lm_head.weight is not untied.body.embed.tok.weight
    assert untied.num_parameters() == tied.num_parameters() + 512 * 64
    s2s = tformer.build("t5-tiny")
    assert s2s.encoder.embed.tok.weight is s2s.decoder.embed.tok.weight is s2s.lm_head.weight


def test_gpt2_initialisation_statistics():
    torch.manual_seed(0)
    model = tformer.build("gpt2", n_layers=4, vocab_size=1000)
    assert isinstance(model, DecoderLM)
    assert model.body.embed.tok.weight.std().item() == pytest.approx(0.02, rel=0.05)
    o = model.body.layers[0].attn.o_proj.weight.std().item()
    assert o == pytest.approx(0.02 / (2 * 4) ** 0.5, rel=0.05)  # scaled residual projections
    assert torch.all(model.body.layers[0].attn.qkv_proj.bias == 0)
    assert torch.all(model.body.norm.weight == 1)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = tformer.build("llama-tiny")
    ids = torch.randint(0, 500, (2, 8))
    model(ids).logits.sum().backward()
    ref = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_gradient_checkpointing(True).train()
    model(ids).logits.sum().backward()
    for r, p in zip(ref, model.parameters()):
        torch.testing.assert_close(p.grad, r)


def test_caches_require_input_pos_and_respect_context():
    model = tformer.build("gpt-tiny").eval()
    model.setup_caches(1, 16)
    with pytest.raises(ValueError, match="input_pos"):
        model(torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="exceeds the model's context of 128"):
        model.setup_caches(1, 129)
    model.clear_caches()
    assert model(torch.zeros(1, 2, dtype=torch.long)).logits.shape == (1, 2, 512)


def test_cache_nbytes_formula():
    model = tformer.build("llama-tiny")
    model.setup_caches(3, 20, dtype=torch.bfloat16)
    cfg = model.config
    assert model.cache_nbytes() == 3 * cfg.n_layers * 2 * cfg.n_kv_heads * cfg.head_dim * 20 * 2


@pytest.mark.parametrize("position", ["learned", "sinusoidal", "rope", "alibi", "t5_relative", "none"])
def test_every_position_scheme_decodes_with_the_cache_as_without(position):
    torch.manual_seed(0)
    model = tformer.build("gpt-tiny", position=position).eval()
    ids = torch.randint(0, 500, (2, 9))
    with torch.no_grad():
        full = model(ids).logits
        model.setup_caches(2, 16)
        steps = [model(ids[:, :4], input_pos=torch.arange(4)).logits]
        steps += [model(ids[:, t : t + 1], input_pos=torch.tensor([t])).logits for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-5)
