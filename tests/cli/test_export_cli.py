"""`tformer export`: a trained tformer directory (model + tokenizer) becomes one transformers loads; user
mistakes are one line on stderr, exit code 2, nothing overwritten."""

from __future__ import annotations

import pytest
import torch

import tformer
from tformer.cli import main
from tformer.tokenizers import train_bpe

transformers = pytest.importorskip("transformers")

TEXT = ["the cat sat on the mat. the dog ate the cat's hat.\n"] * 20


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tformer directory as training leaves it: tformer's config and weights and its tokenizer."""
    tok = train_bpe(TEXT, 300)
    model = tformer.build("gpt-tiny", vocab_size=tok.vocab_size, eos_token_id=tok.eos_token_id)
    d = tmp_path_factory.mktemp("run")
    model.save_pretrained(d, tokenizer=tok)
    return d, model.eval(), tok


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["export", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_loads_in_transformers_with_tokenizer(trained, tmp_path, capsys):
    d, model, tok = trained
    out = tmp_path / "hf"
    code, stdout, _ = run(capsys, "--model", str(d), "--out", str(out))
    assert code == 0
    assert "exported GPT2LMHeadModel and its tokenizer" in stdout and "AutoModelForCausalLM" in stdout
    assert {p.name for p in out.iterdir()} == {
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    }
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    text = "the dog sat on the hat"
    ids = hf_tok(text, return_tensors="pt")["input_ids"]
    assert ids[0].tolist() == tok.encode(text)
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids).logits, rtol=1e-5, atol=1e-5)
        assert torch.equal(
            hf.generate(ids, max_new_tokens=5, do_sample=False), model.generate(ids, max_new_tokens=5)
        )


def test_existing_model_is_refused_then_overwritten(trained, tmp_path, capsys):
    d, _, _ = trained
    out = tmp_path / "taken"
    tformer.build("llama-tiny").save_pretrained(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = run(capsys, "--model", str(d), "--out", str(out))
    assert code == 2 and err.count("\n") == 1 and "already holds a model (config.json)" in err
    assert "--overwrite" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    code, _, _ = run(capsys, "--model", str(d), "--out", str(out), "--overwrite")
    assert code == 0 and transformers.AutoConfig.from_pretrained(out).model_type == "gpt2"


def test_component_without_equivalent_is_one_line(tmp_path, capsys):
    src = tmp_path / "alibi"
    tformer.build("gpt-tiny", position="alibi").save_pretrained(src)
    code, _, err = run(capsys, "--model", str(src), "--out", str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1
    assert "GPT2LMHeadModel" in err and "position='alibi'" in err
    assert not (tmp_path / "out").exists()


def test_model_without_tokenizer_and_no_tokenizer_flag(trained, tmp_path, capsys):
    d, _, _ = trained
    code, stdout, _ = run(capsys, "--model", str(d), "--out", str(tmp_path / "bare"), "--no-tokenizer")
    assert code == 0 and "without a tokenizer" in stdout
    assert not (tmp_path / "bare" / "tokenizer.json").exists()
