"""Images as sequences of patches (Dosovitskiy et al. 2020): patch vectors, a [CLS] token, learned positions.

Shapes: B batch, C channels, H x W pixels, P patch size, N = (H / P) * (W / P) patches, D d_model.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from tformer.errors import DataError


def interpolate_positions(table: torch.Tensor, grid: int, height: int, width: int) -> torch.Tensor:
    """Resize the patch part of a (1, 1 + grid * grid, D) position table to a height x width patch grid.

    The [CLS] position stays; the patch positions are resampled bicubically as a 2-D image (the
    DINO / Hugging Face recipe), so a model trained at one resolution runs at another.
    """
    cls_pos, patch_pos = table[:, :1], table[:, 1:]
    D = table.shape[-1]
    patch_pos = patch_pos.reshape(1, grid, grid, D).permute(0, 3, 1, 2)  # (1, D, grid, grid)
    patch_pos = F.interpolate(patch_pos, size=(height, width), mode="bicubic", align_corners=False)
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, height * width, D)  # (1, h * w, D)
    return torch.cat([cls_pos, patch_pos], dim=1)


class PatchEmbedding(nn.Module):
    """x = Dropout([CLS; Conv(pixels)] + positions): a P x P convolution with stride P embeds each patch.

    Args:
        image_size: side of the square training images (sets the position table: (image_size / P)^2 + 1).
        patch_size: P. num_channels: C. d_model: D. dropout: after adding positions.
    """

    def __init__(
        self, image_size: int, patch_size: int, num_channels: int, d_model: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.patch_size, self.num_channels = patch_size, num_channels
        self.grid = image_size // patch_size
        self.projection = nn.Conv2d(num_channels, d_model, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        self.positions = nn.Parameter(torch.zeros(1, self.grid * self.grid + 1, d_model))
        self.dropout = nn.Dropout(dropout)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.positions, std=0.02)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values (B, C, H, W) -> (B, 1 + N, D); H and W must be multiples of P."""
        B, C, H, W = pixel_values.shape
        P = self.patch_size
        if C != self.num_channels:
            raise DataError(f"images have {C} channels but the model takes {self.num_channels}")
        if H % P or W % P:
            raise DataError(f"image size {H}x{W} is not a multiple of the patch size {P}")
        x = self.projection(pixel_values.to(self.projection.weight.dtype))  # (B, D, H/P, W/P)
        x = x.flatten(2).transpose(1, 2)  # (B, N, D), patches in row-major order
        x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)  # (B, 1 + N, D)
        positions = self.positions
        if (H // P, W // P) != (self.grid, self.grid):
            positions = interpolate_positions(positions, self.grid, H // P, W // P)
        return self.dropout(x + positions)
