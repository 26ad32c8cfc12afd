"""The compiled kernels (skipped where they cannot be built) and the tiny models of the generation tests.

The first run compiles them (about a minute; cached in torch's extension directory afterwards). Where
they cannot be built (no AVX2, no C++ compiler) the tests that need them skip; TFORMER_BUILD_NATIVE=0
skips them without trying.
"""

from __future__ import annotations

import os

import pytest

from tests.generation.conftest import families, one_thread  # noqa: F401  (fixtures shared with generation)
from tformer.kernels import load


@pytest.fixture(scope="session")
def ext():
    if os.environ.get("TFORMER_BUILD_NATIVE") == "0":
        pytest.skip("TFORMER_BUILD_NATIVE=0: native kernels not built")
    kernels = load()
    if kernels is None:
        pytest.skip("native kernels cannot be built here (needs AVX2 and a C++ compiler)")
    return kernels


@pytest.fixture
def fused_steps(ext, monkeypatch) -> list[int]:
    """Counts the one-token layer steps the fused kernel (``decode_layer``) computed in this test."""
    done = [0]
    kernel = ext.decode_layer

    def counted(*args, **kwargs):
        out = kernel(*args, **kwargs)
        done[0] += 1
        return out

    monkeypatch.setattr(ext, "decode_layer", counted)
    return done
