"""One tiny HF model per family, loaded into tformer once per session (imports and builds cost seconds)."""

from __future__ import annotations

import pytest
import torch

import tformer
from tests.generation.helpers import FAMILIES, roughen


@pytest.fixture(scope="session")
def families(tmp_path_factory):
    """name -> (HF model, tformer model with the same weights), both in eval mode."""
    torch.manual_seed(0)
    out = {}
    for name, make in FAMILIES.items():
        hf = roughen(make()).eval()
        d = tmp_path_factory.mktemp(f"gen-{name}")
        hf.save_pretrained(d)
        out[name] = (hf, tformer.from_pretrained(d))
    return out


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest single-threaded; on a busy 2-core machine two threads can be 50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
