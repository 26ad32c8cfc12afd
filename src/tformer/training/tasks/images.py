"""Image classification: images from scikit-learn's digits, a folder per class, or an ``.npz``; one label each.

Shapes: N images, C channels, H x W pixels. Pixels are read as [0, 1] and normalised to [-1, 1] (the mean
and standard deviation 0.5 of Hugging Face's ViT processors).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from tformer.config import ModelConfig
from tformer.errors import ConfigError, DataError
from tformer.training.tasks.base import Batch, TaskSetup, generator
from tformer.training.tasks.classify import ClassifyTask

BUILTIN = ("digits",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass
class ImageData:
    """images (N, C, H, W) float in [0, 1]; labels (N,) indices into ``names``."""

    images: torch.Tensor
    labels: torch.Tensor
    names: list[str]


def load_images(source: str | Path) -> ImageData:
    """Images and labels from ``digits`` (scikit-learn's 1,797 8x8 digits), a folder holding one sub-folder of
    images per class, or an ``.npz`` with ``images`` (N, H, W) or (N, H, W, C) and ``labels`` (N,)."""
    path = Path(source)
    if path.name in BUILTIN and not path.exists():
        return _digits()
    if path.is_dir():
        return _folder(path)
    if path.suffix == ".npz" and path.is_file():
        return _npz(path)
    if not path.exists():
        raise DataError(f"image data {source} does not exist; pass a folder per class, an .npz, or 'digits'")
    raise DataError(f"image data {source} is neither a folder of class folders, an .npz, nor 'digits'")


def _digits() -> ImageData:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("--data digits needs scikit-learn: pip install 'tformer[results]'") from None
    d = load_digits()
    images = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8), 0..16 -> [0, 1]
    return ImageData(images, torch.tensor(d.target, dtype=torch.long), [str(i) for i in range(10)])


def _folder(root: Path) -> ImageData:
    from PIL import Image

    classes = sorted(p for p in root.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{root} holds no class folders; put each class's images in a folder named after it")
    files = [
        (f, i)
        for i, c in enumerate(classes)
        for f in sorted(c.iterdir())
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders of {root}")
    opened = [Image.open(f) for f, _ in files]
    mode = "L" if all(im.mode in ("1", "L", "LA", "I", "I;16") for im in opened) else "RGB"
    arrays = []
    for (f, _), im in zip(files, opened):
        a = np.asarray(im.convert(mode), dtype=np.float32) / 255.0
        if arrays and a.shape != arrays[0].shape:
            raise DataError(
                f"images of inconsistent sizes: {f} is {_size(a)} but {files[0][0]} is {_size(arrays[0])}; "
                "resize them to one size"
            )
        arrays.append(a)
    images = torch.from_numpy(np.stack(arrays))
    images = images[:, None] if images.dim() == 3 else images.permute(0, 3, 1, 2)  # (N, C, H, W)
    labels = torch.tensor([i for _, i in files], dtype=torch.long)
    return ImageData(images.contiguous(), labels, [c.name for c in classes])


def _size(a: np.ndarray) -> str:
    return f"{a.shape[1]}x{a.shape[0]}"


def _npz(path: Path) -> ImageData:
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("images", "labels") if k not in z]
        if missing:
            raise DataError(f"{path} lacks array {missing[0]!r}; it needs 'images' and 'labels'")
        images, labels = z["images"], z["labels"]
    if images.ndim not in (3, 4) or len(images) != len(labels):
        raise DataError(
            f"{path}: images must be (N, H, W) or (N, H, W, C) with one label each, got images "
            f"{images.shape} and labels {labels.shape}"
        )
    x = torch.from_numpy(images.astype(np.float32))
    if images.dtype == np.uint8:
        x = x / 255.0
    x = x[:, None] if x.dim() == 3 else x.permute(0, 3, 1, 2)  # (N, C, H, W)
    values, index = np.unique(labels, return_inverse=True)
    return ImageData(x.contiguous(), torch.from_numpy(index.astype(np.int64)), [str(v) for v in values])


def fit_image_config(cfg: ModelConfig, data: ImageData, keep_size: bool = False) -> dict[str, Any]:
    """The ModelConfig changes that fit a ViT to the data: image size and channels (``keep_size``: positions
    come from a pretrained model and are interpolated), the classification head with the data's labels."""
    _, C, H, W = data.images.shape
    if H != W:
        raise ConfigError(f"images are {W}x{H}; tformer's vision transformer trains on square images")
    image_size = cfg.image_size if keep_size else H
    if H % cfg.patch_size:
        raise ConfigError(
            f"images of {H}x{W} pixels do not split into patch_size={cfg.patch_size} patches; "
            "pass --set patch_size=N with N dividing the image size"
        )
    if keep_size and C != cfg.num_channels:
        raise ConfigError(f"images have {C} channels but the model takes {cfg.num_channels}")
    return {
        "image_size": image_size,
        "num_channels": C,
        "max_seq_len": (image_size // cfg.patch_size) ** 2 + 1,
        "head": "classification",
        "num_labels": len(data.names),
        "extra": {**cfg.extra, "labels": list(data.names)},
    }


Example = tuple[torch.Tensor, int]


def normalize(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] pixels -> [-1, 1]."""
    return (images - 0.5) / 0.5


def shift(images: torch.Tensor, max_shift: int, g: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels each way (zero fill): augmentation for small images."""
    if max_shift == 0:
        return images
    N, _, H, W = images.shape
    padded = F.pad(images, (max_shift,) * 4)  # (N, C, H + 2s, W + 2s)
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2, N), generator=g).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + H, dx[i] : dx[i] + W] for i in range(N)])


class ImageClassifyTask(ClassifyTask):
    """Classification of images: the same loss and accuracy as text classification, on ``pixel_values``.

    Training batches are shifted by up to ``max_shift`` pixels, as a pure function of the step (a resumed run
    draws the same batches).
    """

    name = "image-classify"
    arch, default_preset = "vit", "vit-tiny"
    uses_tokenizer = False

    def __init__(
        self,
        train: Sequence[Example],
        val: Sequence[Example],
        batch_size: int,
        grad_accum: int,
        seed: int,
        eval_batches: int | None,
        max_shift: int = 0,
    ) -> None:
        super().__init__(train, val, -1, batch_size, grad_accum, seed, eval_batches)
        self.max_shift = max_shift

    def collate(self, examples: Sequence[Example], augment: torch.Generator | None = None) -> Batch:
        """Stack images into a batch: pixel_values (B, C, H, W) normalised, labels (B,); optional shift augmentation."""
        pixels = torch.stack([e[0] for e in examples])  # (B, C, H, W) in [0, 1]
        if augment is not None:
            pixels = shift(pixels, self.max_shift, augment)
        return {"pixel_values": normalize(pixels), "labels": torch.tensor([e[1] for e in examples])}

    def train_batch(self, step: int, micro: int) -> Batch:
        """The training batch of one micro-step, drawn and augmented from the step's own seed."""
        n = self.micro_index(step, micro)
        idx = self.stream.take(n * self.batch_size, self.batch_size)
        return self.collate([self.train[i] for i in idx], augment=generator(self.seed, n, 7))

    def logits(self, model: Any, batch: Batch) -> torch.Tensor:
        """Class logits (B, num_labels) of the batch's images."""
        return model(batch["pixel_values"]).logits

    def n_tokens(self, batch: Batch) -> int:
        """The number of images in the batch (throughput is logged as images/s)."""
        return int(batch["pixel_values"].shape[0])  # images: throughput is logged as images/s

    @classmethod
    def check_data(cls, data: Sequence[str]) -> list[Path]:
        """The one image source of ``--data`` (a folder, an .npz or a built-in name such as ``digits``)."""
        if len(data) != 1:
            raise DataError(
                f"image-classify takes one --data source (a folder, an .npz or 'digits'), got {len(data)}"
            )
        return [Path(data[0])]

    @classmethod
    def read_inputs(cls, paths: Sequence[Path]) -> tuple[list[str], list[Any]]:
        """(no texts, one record: the whole ``ImageData`` of the source)."""
        return [], [load_sources(paths)]

    @classmethod
    def model_changes(
        cls, config: ModelConfig, records: Sequence[Any], pretrained: bool = False
    ) -> dict[str, Any]:
        """Image size, channels and the classification head from the images (``records[0]``); a pretrained
        model keeps its image size (its positions are interpolated for other sizes)."""
        return fit_image_config(config, records[0], keep_size=pretrained)

    @classmethod
    def from_setup(cls, setup: TaskSetup) -> ImageClassifyTask:
        """The task over the images of ``setup.paths``, split by ``val_fraction`` and ``seed``."""
        data = load_sources(setup.paths)
        examples = [(data.images[i], int(data.labels[i])) for i in range(len(data.labels))]
        train, val = cls.split(examples, setup)
        shift_px = 0 if setup.evaluate_only else setup.config.image_shift
        return cls(train, val, **setup.batching(), eval_batches=setup.n_eval_batches(), max_shift=shift_px)


def load_sources(sources: Sequence[str | Path]) -> ImageData:
    """The images of the one ``--data`` source."""
    return load_images(ImageClassifyTask.check_data([str(s) for s in sources])[0])
