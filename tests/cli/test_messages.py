"""The command line speaks in flags: hints name `--do-sample`, not `do_sample=False`; options that greedy
decoding ignores warn; `--version`; a failing `generate` prints nothing of the prompt first."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import tformer
from tformer._version import __version__
from tformer.cli import build_parser, cli_wording, main
from tformer.tokenizers import CharTokenizer

TEXT = "the cat sat on the mat. the dog ran under a log.\n"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    tok = CharTokenizer.train(TEXT)
    torch.manual_seed(0)
    cfg = tformer.ModelConfig(vocab_size=tok.vocab_size, d_model=16, n_layers=1, n_heads=2, max_seq_len=16)
    tformer.build(cfg).save_pretrained(d)
    tok.save(d)
    return d


def generate(capsys, model_dir, *args):
    capsys.readouterr()
    code = main(["generate", "--model", str(model_dir), *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_generation_errors_name_flags(model_dir, capsys):
    code, out, err = generate(capsys, model_dir, "--prompt", "the", "--do-sample", "--temperature", 0)
    assert code == 2
    assert err.strip() == (
        "tformer: error: --temperature must be > 0 when sampling, got 0.0; for greedy decoding: without --do-sample"
    )
    code, _, err = generate(capsys, model_dir, "--prompt", "the", "--num-return-sequences", 3)
    assert "--num-return-sequences 3 needs --num-beams >= 3 (or --do-sample)" in err
    code, _, err = generate(capsys, model_dir, "--prompt", "the", "--max-new-tokens", 14)
    assert "lower --max-new-tokens or shorten the prompt, or pass --crop-context" in err
    assert "=" not in err  # no Python argument left


def test_sampling_options_without_do_sample_warn(model_dir, capsys):
    code, out, err = generate(capsys, model_dir, "--prompt", "the", "--top-p", 1.5, "--max-new-tokens", 3)
    assert code == 0 and len(out) > 0
    assert err.strip() == "tformer: warning: --top-p 1.5 is ignored: only sampling uses it (--do-sample)"
    with pytest.warns(UserWarning, match="temperature=0.5, top_p=1.5 are ignored"):
        tformer.from_pretrained(model_dir).generate(
            torch.tensor([[1, 2]]), top_p=1.5, temperature=0.5, max_new_tokens=3
        )


def test_a_char_tokenizer_hint_names_the_command_that_fixes_it(tmp_path, capsys):
    tok = CharTokenizer.train(TEXT, unknown="error")
    tok.save(tmp_path)
    capsys.readouterr()
    sys.stdin, stdin = __import__("io").StringIO("the zebra"), sys.stdin
    try:
        assert main(["tokenizer", "encode", "--tokenizer", str(tmp_path)]) == 2
    finally:
        sys.stdin = stdin
    err = capsys.readouterr().err
    assert "`tformer tokenizer train --type char --unknown replace`" in err and "unknown=" not in err


def test_the_wording_rules():
    gen = build_parser().parse_args(["generate", "--model", "m", "--prompt", "p"]).cli_parser
    assert cli_wording("top_p must be in (0, 1], got 1.5", gen) == "--top-p must be in (0, 1], got 1.5"
    assert cli_wording("use do_sample=True", gen) == "use --do-sample"
    # words that are also flags, paths and the --set syntax of other commands stay as they are
    kept = "the tokenizer in runs/top_k/x has 5 ids; seed 3; block_size=64 exceeds"
    assert cli_wording(kept, gen) == kept
    train = build_parser().parse_args(["train", "--out", "o"]).cli_parser
    assert cli_wording("max_steps must be a positive integer, got 0", train).startswith("--max-steps must")


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"tformer {__version__}"
    proc = subprocess.run([sys.executable, "-m", "tformer.cli", "--version"], capture_output=True, text=True)
    assert proc.stdout.strip() == f"tformer {__version__}"


@pytest.mark.parametrize("stream", [True, False])
def test_a_failing_generate_prints_nothing_of_the_prompt(model_dir, capsys, stream):
    args = ["--prompt", "the cat sat", "--max-new-tokens", 10, *(["--stream"] if stream else [])]
    code, out, err = generate(capsys, model_dir, *args)
    assert code == 2 and out == "" and "exceeds the model's context" in err
    code, out, err = generate(capsys, model_dir, *args, "--crop-context")
    assert code == 0 and out.startswith("the cat sat") and len(out) == len("the cat sat") + 10 + 1
