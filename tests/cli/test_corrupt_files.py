"""Every file tformer reads, damaged: one line naming the file and what is wrong, from `tformer generate`
and `tformer eval` (no traceback), and a tformer error (not a raw library one) from the Python API."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import tformer
from tests.training.helpers import write_text
from tformer.cli import main
from tformer.errors import TformerError
from tformer.tokenizers import CharTokenizer, WordPieceTokenizer
from tformer.tokenizers.bpe import ByteLevelBPETokenizer
from tformer.training.checkpoint import load_checkpoint

TEXT = "the cat sat on the mat. the dog ran under a log.\n" * 20


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """Intact model directories: tformer's (char tokenizer), and Hugging Face GPT-2 layouts (one file,
    sharded, pytorch_model.bin) beside GPT-2 BPE files, and a BERT one beside a WordPiece vocab.txt."""
    transformers = pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("intact")
    char = CharTokenizer.train(TEXT)
    torch.manual_seed(0)
    cfg = tformer.ModelConfig(vocab_size=char.vocab_size, d_model=16, n_layers=1, n_heads=2, max_seq_len=32)
    tformer.build(cfg).save_pretrained(root / "tformer")
    char.save(root / "tformer")
    bpe = ByteLevelBPETokenizer.train([TEXT], vocab_size=270)
    eos = bpe.eos_token_id
    hf = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            vocab_size=bpe.vocab_size,
            n_embd=16,
            n_layer=1,
            n_head=2,
            n_positions=32,
            bos_token_id=eos,
            eos_token_id=eos,
        )
    )
    for name, kwargs in {"hf": {}, "hf_sharded": {"max_shard_size": "20KB"}, "hf_bin": {}}.items():
        hf.save_pretrained(root / name, **kwargs)
        bpe.save(root / name)
        (root / name / "tformer_tokenizer.json").unlink()  # GPT-2's vocab.json + merges.txt
    (root / "hf_bin" / "model.safetensors").unlink()  # the older layout: a weights_only torch.save
    torch.save({k: v.contiguous() for k, v in hf.state_dict().items()}, root / "hf_bin" / "pytorch_model.bin")
    assert (root / "hf_sharded" / "model.safetensors.index.json").is_file()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(TEXT.split()))]
    (root / "bert").mkdir()
    (root / "bert" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    bert = transformers.BertForMaskedLM(
        transformers.BertConfig(
            vocab_size=len(vocab),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
        )
    )
    bert.save_pretrained(root / "bert")
    assert isinstance(tformer.load_tokenizer(root / "bert"), WordPieceTokenizer)
    return root


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _shard(d: Path) -> Path:
    return d / sorted(json.loads((d / "model.safetensors.index.json").read_text())["weight_map"].values())[0]


Damage = Callable[[Path], None]
CASES: dict[str, tuple[str, str, Damage, str]] = {
    # name: (directory, file named in the message, damage, what the message says)
    "empty weights (tformer)": (
        "tformer",
        "model.safetensors",
        lambda d: (d / "model.safetensors").write_bytes(b""),
        "is empty",
    ),
    "truncated weights (tformer)": (
        "tformer",
        "model.safetensors",
        lambda d: _truncate(d / "model.safetensors"),
        "not a readable safetensors file",
    ),
    "truncated header (HF)": (
        "hf",
        "model.safetensors",
        lambda d: _truncate(d / "model.safetensors", 0.001),
        "not a readable safetensors file",
    ),
    "empty weights (HF)": (
        "hf",
        "model.safetensors",
        lambda d: (d / "model.safetensors").write_bytes(b""),
        "is empty",
    ),
    "bad index json": (
        "hf_sharded",
        "model.safetensors.index.json",
        lambda d: (d / "model.safetensors.index.json").write_text("{"),
        "not valid JSON",
    ),
    "index without weight_map": (
        "hf_sharded",
        "model.safetensors.index.json",
        lambda d: (d / "model.safetensors.index.json").write_text("{}"),
        "weight_map",
    ),
    "index naming a missing shard": (
        "hf_sharded",
        "model.safetensors.index.json",
        lambda d: _shard(d).unlink(),
        "names shard",
    ),
    "truncated shard": (
        "hf_sharded",
        "model-00001-of-",
        lambda d: _truncate(_shard(d)),
        "not a readable safetensors file",
    ),
    "truncated pytorch_model.bin": (
        "hf_bin",
        "pytorch_model.bin",
        lambda d: _truncate(d / "pytorch_model.bin"),
        "not a readable PyTorch weights file",
    ),
    "bad config json": (
        "tformer",
        "config.json",
        lambda d: (d / "config.json").write_text('{"format": "tf'),
        "not valid JSON",
    ),
    "config json not an object": (
        "hf",
        "config.json",
        lambda d: (d / "config.json").write_text("[1, 2]"),
        "not a model config",
    ),
    "config with a bad value": (
        "tformer",
        "config.json",
        lambda d: _edit_json(d / "config.json", lambda c: c["model"].update(d_model="wide")),
        "d_model must be",
    ),
    "bad tokenizer json": (
        "tformer",
        "tformer_tokenizer.json",
        lambda d: _truncate(d / "tformer_tokenizer.json"),
        "invalid JSON",
    ),
    "tokenizer json of wrong types": (
        "tformer",
        "tformer_tokenizer.json",
        lambda d: _edit_json(d / "tformer_tokenizer.json", lambda t: t.update(chars=5)),
        "malformed tokenizer file",
    ),
    "bad vocab.json": ("hf", "vocab.json", lambda d: (d / "vocab.json").write_text('{"a": '), "invalid JSON"),
    "bad merges.txt": (
        "hf",
        "merges.txt",
        lambda d: (d / "merges.txt").write_text("#version: 0.2\nonlyone\n"),
        "merges.txt",
    ),
    "vocab.txt not UTF-8": (
        "bert",
        "vocab.txt",
        lambda d: (d / "vocab.txt").write_bytes(b"\xff\xfe[PAD]\n"),
        "not UTF-8",
    ),
}


def _edit_json(path: Path, change: Callable[[dict], None]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


@pytest.fixture(params=sorted(CASES), ids=lambda name: name.replace(" ", "-"))
def damaged(request, dirs, tmp_path):
    kind, named, damage, what = CASES[request.param]
    d = tmp_path / kind
    shutil.copytree(dirs / kind, d)
    damage(d)
    return d, named, what


def _one_line(capsys, argv: list[str], named: str, what: str) -> None:
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("tformer: error: ") and "\n" not in err and "Traceback" not in err, err
    assert named in err and what in err, err
    assert captured.out == ""


def test_generate_names_the_damaged_file_in_one_line(damaged, capsys):
    d, named, what = damaged
    if d.name == "bert":
        pytest.skip("an encoder cannot generate; `eval` and the API read its files below")
    _one_line(
        capsys, ["generate", "--model", str(d), "--prompt", "the ", "--max-new-tokens", "3"], named, what
    )


def test_eval_names_the_damaged_file_in_one_line(damaged, capsys, tmp_path):
    d, named, what = damaged
    task = "mlm" if d.name == "bert" else "clm"
    data = write_text(tmp_path / "val.txt", n=50)
    argv = ["eval", "--model", str(d), "--data", str(data), "--task", task, "--block-size", "16"]
    _one_line(capsys, [*argv, "--max-batches", "1"], named, what)


def test_the_api_raises_a_tformer_error_naming_the_file(damaged):
    d, named, what = damaged
    with pytest.raises(TformerError) as e:
        tformer.from_pretrained(d)
        tformer.load_tokenizer(d)
    assert named in str(e.value) and what in str(e.value) and "\n" not in str(e.value)


def test_a_corrupt_training_checkpoint_is_one_line(tmp_path, capsys):
    data = write_text(tmp_path / "a.txt")
    out = tmp_path / "run"
    sets = [
        "d_model=16",
        "n_heads=2",
        "d_ff=32",
        "n_layers=1",
        "max_seq_len=16",
        "batch_size=4",
        "eval_batches=1",
    ]
    argv = ["train", "--data", str(data), "--out", str(out), "--max-steps", "1", "--no-progress"]
    assert main([*argv, *(a for s in sets for a in ("--set", s))]) == 0
    run_json = (out / "run.json").read_text()
    (out / "run.json").write_text("{")
    _one_line(capsys, ["train", "--out", str(out), "--resume", "--no-progress"], "run.json", "not valid JSON")
    (out / "run.json").write_text(run_json)
    _truncate(out / "checkpoints" / "last.pt")
    with pytest.raises(TformerError, match="cannot read checkpoint .*last.pt"):
        load_checkpoint(out / "checkpoints" / "last.pt")
    _one_line(
        capsys, ["train", "--out", str(out), "--resume", "--no-progress"], "last.pt", "cannot read checkpoint"
    )
