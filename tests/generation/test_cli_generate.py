"""`tformer generate` on a tformer model directory and on a converted Hugging Face GPT-2 directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tformer
from tformer.cli import main
from tformer.tokenizers.bpe import ByteLevelBPETokenizer

TEXTS = ["The quick brown fox jumps over the lazy dog. " * 3, "héllo wörld, ça va? 你好世界 " * 3]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """A tformer model saved beside its tokenizer, and an HF GPT-2 beside GPT-2-format vocab/merges."""
    transformers = pytest.importorskip("transformers")
    tok = ByteLevelBPETokenizer.train(TEXTS, vocab_size=300)
    torch.manual_seed(0)
    ours = tmp_path_factory.mktemp("tformer-dir")
    cfg = tformer.ModelConfig(
        vocab_size=tok.vocab_size,
        d_model=32,
        n_layers=2,
        n_heads=2,
        max_seq_len=64,
        eos_token_id=tok.eos_token_id,
    )
    tformer.build(cfg).save_pretrained(ours)
    tok.save(ours)
    hf_dir = tmp_path_factory.mktemp("hf-dir")
    hf_cfg = transformers.GPT2Config(
        vocab_size=tok.vocab_size,
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=64,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    transformers.GPT2LMHeadModel(hf_cfg).save_pretrained(hf_dir)
    tok.save(hf_dir)
    (hf_dir / "tformer_tokenizer.json").unlink()  # only GPT-2's vocab.json + merges.txt remain
    return {"tformer": ours, "hf": hf_dir, "tok": tok}


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["generate", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("kind", ["tformer", "hf"])
def test_generate_prints_prompt_and_continuation(dirs, capsys, kind):
    tok, d = dirs["tok"], dirs[kind]
    code, out, _ = run_cli(capsys, "--model", str(d), "--prompt", "The quick", "--max-new-tokens", "12")
    assert code == 0
    ids = torch.tensor([tok.encode("The quick")])
    expected = tformer.from_pretrained(d).generate(ids, max_new_tokens=12)
    assert (
        out == "The quick" + tok.decode(expected[0, ids.shape[1] :].tolist(), skip_special_tokens=True) + "\n"
    )


@pytest.mark.parametrize("kind", ["tformer", "hf"])
def test_stream_prints_the_same_text(dirs, capsys, kind):
    d = str(dirs[kind])
    opts = [
        "--model",
        d,
        "--prompt",
        "héllo",
        "--max-new-tokens",
        "16",
        "--do-sample",
        "--seed",
        "4",
        "--top-k",
        "40",
    ]
    _, plain, _ = run_cli(capsys, *opts)
    code, streamed, _ = run_cli(capsys, *opts, "--stream")
    assert code == 0 and streamed == plain


def test_prompt_file_and_beams(dirs, capsys, tmp_path):
    f = tmp_path / "prompt.txt"
    f.write_text("The lazy", encoding="utf-8")
    code, out, _ = run_cli(
        capsys,
        "--model",
        str(dirs["tformer"]),
        "--prompt-file",
        str(f),
        "--num-beams",
        "3",
        "--num-return-sequences",
        "2",
        "--max-new-tokens",
        "5",
    )
    assert code == 0 and out.count("--- sequence") == 2 and out.count("The lazy") == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--do-sample", "--temperature", "0"], "temperature must be > 0"),
        (["--do-sample", "--top-p", "1.5"], "top_p must be in (0, 1]"),
        (["--num-beams", "0"], "num_beams must be an integer >= 1"),
        (["--prompt-file", "/nonexistent/prompt.txt"], "prompt file"),
    ],
)
def test_bad_settings_print_one_line(dirs, capsys, args, message):
    base = ["--model", str(dirs["tformer"])] + ([] if "--prompt-file" in args else ["--prompt", "The"])
    code, out, err = run_cli(capsys, *base, *args)
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_tokenizer_is_one_line(capsys, tmp_path):
    torch.manual_seed(0)
    tformer.build(tformer.ModelConfig(vocab_size=40, d_model=16, n_layers=1, n_heads=2)).save_pretrained(
        tmp_path
    )
    code, _, err = run_cli(capsys, "--model", str(tmp_path), "--prompt", "hi")
    assert code == 2 and "has no tokenizer" in err and err.count("\n") == 1


def test_long_prompt_fails_or_truncates(dirs, capsys):
    long = "The quick brown fox " * 40
    code, _, err = run_cli(capsys, "--model", str(dirs["tformer"]), "--prompt", long, "--max-new-tokens", "4")
    assert code == 2 and "context of 64" in err
    code, out, _ = run_cli(
        capsys,
        "--model",
        str(dirs["tformer"]),
        "--prompt",
        long,
        "--max-new-tokens",
        "4",
        "--truncate",
        "--no-echo",
    )
    assert code == 0 and out.endswith("\n")


def test_real_command_streams(dirs):
    """The installed console entry point, as a user runs it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "tformer.cli",
        "generate",
        "--model",
        str(dirs["hf"]),
        "--prompt",
        "The quick",
        "--max-new-tokens",
        "8",
        "--stream",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd=Path(__file__).parent)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("The quick") and res.stdout.endswith("\n")


def test_speculative_flags_print_acceptance_and_speed(dirs, capsys):
    d = str(dirs["tformer"])
    base = ["--model", d, "--prompt", "The quick brown fox. The quick", "--max-new-tokens", "12", "--no-echo"]
    _, plain, _ = run_cli(capsys, *base)
    for extra in (["--draft-model", d, "--num-draft-tokens", "3"], ["--prompt-lookup", "4"]):
        code, out, err = run_cli(capsys, *base, *extra)
        assert code == 0 and out == plain  # greedy: the same text
        assert "drafted" in err and "accepted" in err and "tok/s" in err and err.count("\n") == 1
    code, streamed, err = run_cli(capsys, *base, "--prompt-lookup", "4", "--stream")
    assert code == 0 and streamed == plain and "tok/s" in err


def test_draft_with_another_tokenizer_is_one_line(dirs, capsys, tmp_path):
    tok = ByteLevelBPETokenizer.train(TEXTS, vocab_size=280)
    torch.manual_seed(0)
    cfg = tformer.ModelConfig(vocab_size=tok.vocab_size, d_model=16, n_layers=1, n_heads=2, max_seq_len=64)
    tformer.build(cfg).save_pretrained(tmp_path)
    tok.save(tmp_path)
    code, _, err = run_cli(
        capsys, "--model", str(dirs["tformer"]), "--prompt", "The", "--draft-model", str(tmp_path)
    )
    assert code == 2 and "draft model's tokenizer" in err and "280 tokens" in err and err.count("\n") == 1
    bare = tmp_path / "bare"  # no tokenizer beside it: generate finds the vocabulary sizes differ
    tformer.build(cfg).save_pretrained(bare)
    code, _, err = run_cli(
        capsys,
        "--model",
        str(dirs["tformer"]),
        "--prompt",
        "The",
        "--draft-model",
        str(bare),
        "--max-new-tokens",
        "8",
    )
    assert code == 2 and "vocab_size 280" in err and err.count("\n") == 1
