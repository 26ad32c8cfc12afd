import pytest
import torch

from tformer.errors import ConfigError, DataError
from tformer.viz import compute_maps
from tformer.viz.maps import token_labels

TEXT = "The quick brown fox"


def test_decoder_maps_are_the_models_own_with_token_labels(models, tokenizer):
    model = models["decoder"]
    maps = compute_maps(model, tokenizer, TEXT)
    ids = tokenizer.encode(TEXT)
    (s,) = maps.sets
    assert s.name == "self" and s.query_tokens == s.key_tokens == token_labels(tokenizer, ids)
    assert "".join(s.query_tokens) == TEXT
    assert s.layers == [0, 1] and s.heads == [0, 1, 2, 3] and s.weights.shape == (2, 4, len(ids), len(ids))
    with torch.no_grad():
        ref = model(torch.tensor([ids]), output_attentions=True).attentions
    torch.testing.assert_close(s.weights, torch.stack([w[0] for w in ref]))


def test_encoder_decoder_maps_with_a_target(models, tokenizer):
    maps = compute_maps(
        models["encoder_decoder"], tokenizer, TEXT, target="le renard", layers=[-1], heads=[2, 0]
    )
    assert [s.name for s in maps.sets] == ["encoder", "decoder", "cross"]
    enc, dec, cross = maps.sets
    eos = tokenizer.eos_token_id
    assert enc.key_tokens[-1] == tokenizer.decode([eos])  # the source ends in EOS, as in training
    assert dec.query_tokens[0] == tokenizer.decode([eos])  # the decoder start token
    assert "".join(dec.query_tokens[1:]) == "le renard" and maps.target_text == "le renard"
    assert cross.query_tokens == dec.query_tokens and cross.key_tokens == enc.key_tokens
    assert all(s.layers == [1] and s.heads == [2, 0] for s in maps.sets)
    assert cross.weights.shape == (1, 2, len(dec.query_tokens), len(enc.key_tokens))
    assert not cross.is_self and enc.is_self


def test_encoder_decoder_without_target_reads_its_greedy_output(models, tokenizer):
    model = models["encoder_decoder"]
    maps = compute_maps(model, tokenizer, TEXT, max_new_tokens=5)
    src = torch.tensor([tokenizer.encode(TEXT) + [tokenizer.eos_token_id]])
    expected = model.generate(src, max_new_tokens=5, eos_token_id=tokenizer.eos_token_id, pad_token_id=0)[0]
    dec = maps.get("decoder")
    assert dec.query_tokens == token_labels(tokenizer, expected[: len(dec.query_tokens)].tolist())
    assert 2 <= len(dec.query_tokens) <= 6


def test_bad_input_is_a_one_line_error(models, tokenizer):
    with pytest.raises(
        DataError, match=r"the text is \d+ tokens, longer than the model's context of 48 tokens"
    ):
        compute_maps(models["decoder"], tokenizer, "The quick brown fox jumps. " * 20)
    with pytest.raises(DataError, match="the text is empty"):
        compute_maps(models["decoder"], tokenizer, "")
    with pytest.raises(ConfigError, match="--target applies to encoder-decoder models"):
        compute_maps(models["decoder"], tokenizer, TEXT, target="x")
    with pytest.raises(ConfigError, match=r"layer 2 is out of range: the encoder has 2 layers"):
        compute_maps(models["encoder"], tokenizer, TEXT, layers=[2])
    with pytest.raises(ConfigError, match=r"head 7 is out of range"):
        compute_maps(models["encoder_decoder"], tokenizer, TEXT, target="le", heads=[7])
