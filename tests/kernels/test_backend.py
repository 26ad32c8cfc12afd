"""native_kernels(model): generation unchanged with the kernels, and the model exactly restored after."""

from __future__ import annotations

import torch

import tformer
import tformer.generation
from tests.generation.helpers import padded_batch
from tformer.kernels import NativeAttention, NativeLinear, NativeTransformerBlock, native_kernels


def classes_and_attributes(model: torch.nn.Module) -> list[tuple[type, list[str]]]:
    return [(type(m), sorted(vars(m))) for m in model.modules()]


def test_generation_is_unchanged_and_everything_restored(families, ext):
    _, model = families["llama"]
    ids, mask = padded_batch("llama", [7, 7], seed=3)
    single = ids[:1]
    kw = dict(max_new_tokens=12, eos_token_id=[], output_logits=True, return_dict=True)
    plain = model.generate(single, **kw)
    before = classes_and_attributes(model)
    with native_kernels(model) as active:
        assert active
        swapped = {type(m) for m in model.modules()}
        assert {NativeLinear, NativeAttention, NativeTransformerBlock} <= swapped
        fast = model.generate(single, **kw)
        batched = model.generate(ids, attention_mask=mask, max_new_tokens=4)  # several rows: PyTorch path
    assert torch.equal(fast.sequences, plain.sequences)
    for a, b in zip(fast.logits, plain.logits):
        assert (a - b).abs().max() <= 1e-5
    assert torch.equal(batched, model.generate(ids, attention_mask=mask, max_new_tokens=4))
    assert all("forward" not in vars(m) for m in model.modules())
    assert classes_and_attributes(model) == before


def test_swapping_keeps_identity_parameters_and_state_dict(families, ext):
    """The swap is in place: the same module objects, tied weights still tied, the same state_dict keys."""
    _, model = families["gpt2"]
    modules, params, keys = list(model.modules()), list(model.parameters()), list(model.state_dict())
    with native_kernels(model):
        assert type(model.lm_head) is NativeLinear
        assert all(a is b for a, b in zip(model.modules(), modules, strict=True))
        assert all(a is b for a, b in zip(model.parameters(), params, strict=True))  # tied ones deduplicated
        assert list(model.state_dict()) == keys


def test_nested_and_disabled_calls_leave_the_model_alone(families, ext):
    _, model = families["gpt2"]
    before = classes_and_attributes(model)
    with native_kernels(model, enabled=False) as active:
        assert not active and classes_and_attributes(model) == before
    with native_kernels(model):
        inside = classes_and_attributes(model)
        with native_kernels(model) as again:  # the outer call owns the swap
            assert again and classes_and_attributes(model) == inside
        assert classes_and_attributes(model) == inside
    assert classes_and_attributes(model) == before


def test_generation_reexports_the_entry_point():
    assert tformer.generation.native_kernels is native_kernels


def test_cli_native_kernels_prints_the_same_text(tmp_path, capsys, ext, fused_steps):
    """`tformer generate --native-kernels` runs the fused layers and prints what the PyTorch path prints."""
    from tformer.cli import main
    from tformer.tokenizers.char import CharTokenizer

    tok = CharTokenizer.train(["the quick brown fox jumps over the lazy dog"])
    torch.manual_seed(0)
    cfg = tformer.ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=2, max_seq_len=64)
    tformer.build(cfg).save_pretrained(tmp_path)
    tok.save(tmp_path)
    args = ["generate", "--model", str(tmp_path), "--prompt", "the quick", "--max-new-tokens", "12"]
    assert main(args) == 0
    plain = capsys.readouterr().out
    assert main([*args, "--native-kernels"]) == 0
    assert capsys.readouterr().out == plain
    assert fused_steps[0] == cfg.n_layers * 11  # every step after the prompt
