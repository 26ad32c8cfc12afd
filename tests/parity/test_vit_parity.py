"""ViT parity with Hugging Face: ViTForImageClassification and ViTModel (with pooler), both attention
backends, and position embeddings interpolated for other image sizes."""

from __future__ import annotations

import pytest
import torch

from tests.parity.helpers import assert_close_scaled, perturb, save_and_load

transformers = pytest.importorskip("transformers")

IMPLS = ["sdpa", "reference"]
ARCHS = ["ViTForImageClassification", "ViTModel"]


def vit_config() -> transformers.ViTConfig:
    """Two layers on 16-pixel, 3-channel images in 4-pixel patches, five labels."""
    return transformers.ViTConfig(
        image_size=16,
        patch_size=4,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        num_labels=5,
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.manual_seed(0)
    out = {}
    for arch in ARCHS:
        hf = getattr(transformers, arch)(vit_config()).eval()
        perturb(hf)
        d = tmp_path_factory.mktemp(arch)
        out[arch] = (hf, {impl: save_and_load(hf, d, impl) for impl in IMPLS})
    return out


@pytest.mark.parametrize("size", [(16, 16), (24, 24), (16, 28)], ids=["trained", "larger", "non-square"])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("arch", ARCHS)
def test_outputs_match(models, arch, impl, size):
    hf, ours = models[arch]
    pixels = torch.randn(3, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(pixels, interpolate_pos_encoding=size != (16, 16))
        got = ours[impl](pixels)
    if arch == "ViTModel":
        assert_close_scaled(got.last_hidden_state, ref.last_hidden_state)
        assert_close_scaled(got.pooler_output, ref.pooler_output)
    else:
        assert got.logits.shape == (3, 5)
        assert_close_scaled(got.logits, ref.logits)


def test_config_and_labels(models):
    ours = models["ViTForImageClassification"][1]["sdpa"]
    cfg = ours.config
    assert (cfg.arch, cfg.image_size, cfg.patch_size, cfg.num_channels, cfg.num_labels) == (
        "vit",
        16,
        4,
        3,
        5,
    )
    assert cfg.extra["labels"] == [f"LABEL_{i}" for i in range(5)]


def test_bad_images(models):
    ours = models["ViTForImageClassification"][1]["sdpa"]
    with pytest.raises(ValueError, match="images have 1 channels but the model takes 3"):
        ours(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match="image size 18x16 is not a multiple of the patch size 4"):
        ours(torch.randn(1, 3, 18, 16))
