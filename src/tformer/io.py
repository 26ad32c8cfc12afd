"""Plain file I/O: atomic writes, weight files, config.json, and a tformer model directory.

A tformer directory holds ``config.json`` (``"format": "tformer"`` and the ModelConfig) and
``model.safetensors``. Weights are read only through safetensors or ``torch.load(weights_only=True)``: pickled
code is never executed. Which format a directory holds, and building a model from it, is
``tformer.loading``'s job; this module knows no model class.

Big checkpoints: :func:`scan_weights` reads only the headers of a directory's weight files and returns a
:class:`StoredTensor` per tensor (where its bytes lie); a tensor is read when asked, either memory-mapped
(:meth:`StoredTensor.map`, pages come in as they are touched) or straight into a caller's tensor
(:meth:`StoredTensor.read_into`, no intermediate copy). :func:`write_safetensors` writes each tensor from its
own memory, one at a time, in ``safetensors.torch.save_file``'s layout with the data 64-byte aligned.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import pickle
import struct
import tempfile
import zipfile
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from tformer._version import __version__
from tformer.config import ModelConfig
from tformer.errors import CheckpointError, ConfigError, first_line

FORMAT = "tformer"
FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def atomic_write(path: str | Path, write, suffix: str = ".tmp") -> None:
    """Write a file via a temporary sibling and ``os.replace``, so readers never see a partial file.

    ``write`` is called with the temporary path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def unique_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with tied tensors kept once (under their first name), detached, not copied."""
    seen: dict[tuple[int, int, tuple], str] = {}
    out: dict[str, torch.Tensor] = {}
    for name, t in model.state_dict().items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key in seen:
            continue
        seen[key] = name
        out[name] = t.detach()
    return out


def tied_aliases(model: torch.nn.Module) -> set[str]:
    """State-dict names that are aliases of an earlier tensor (tied weights)."""
    return set(model.state_dict()) - set(unique_state_dict(model))


# safetensors' dtype names, in the order its writer lays tensors out (its Dtype enum, largest first, so that
# every tensor starts aligned to its element size)
SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "U64": torch.uint64,
    "I64": torch.int64,
    "F64": torch.float64,
    "C64": torch.complex64,
    "F32": torch.float32,
    "U32": torch.uint32,
    "I32": torch.int32,
    "BF16": torch.bfloat16,
    "F16": torch.float16,
    "U16": torch.uint16,
    "I16": torch.int16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_DTYPE_NAMES = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}
# Where tensor data starts in the files written here, and what a tensor's offset must be a multiple of to be
# memory-mapped as it is: torch's allocator aligns to 64 bytes, and kernels (MKL) give bitwise-different
# results on less-aligned memory, so a mapped tensor computes exactly as one read into fresh memory
ALIGNMENT = 64
_DTYPE_RANK = {dtype: rank for rank, dtype in enumerate(SAFETENSORS_DTYPES.values())}


def _byte_view(t: torch.Tensor) -> memoryview:
    """The bytes of a contiguous CPU tensor, without a copy."""
    return memoryview(t.detach().reshape(-1).view(torch.uint8).numpy())


class TensorSource(Protocol):
    """A tensor known by shape and dtype whose values ``tensor()`` computes (``tformer.interop.lazy``)."""

    shape: torch.Size
    dtype: torch.dtype

    def tensor(self) -> torch.Tensor:
        """The values."""
        ...


def write_safetensors(
    path: str | Path,
    tensors: Mapping[str, torch.Tensor | TensorSource],
    metadata: dict[str, str] | None = None,
) -> None:
    """Write ``tensors`` as a safetensors file: what ``safetensors.torch.save_file`` writes, with the header
    padded (with spaces, as the format allows) so that the data starts :data:`ALIGNMENT`-byte aligned.

    Each tensor is written from its own memory (a non-contiguous or non-CPU one is first copied alone; a
    :class:`TensorSource` is computed when its turn comes), so saving never holds a second copy of the model.
    Tensors must not share memory (see :func:`unique_state_dict`).
    """
    for name, t in tensors.items():
        if t.dtype not in _DTYPE_NAMES:
            raise ValueError(f"cannot write tensor {name!r} of dtype {t.dtype} to safetensors")
    order = sorted(tensors, key=lambda name: (_DTYPE_RANK[tensors[name].dtype], name))
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name in order:
        t = tensors[name]
        nbytes = math.prod(t.shape) * t.dtype.itemsize
        header[name] = {
            "dtype": _DTYPE_NAMES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    blob += b" " * (-(8 + len(blob)) % ALIGNMENT)  # spaces: the data starts ALIGNMENT-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name in order:
            t = tensors[name]
            t = t if isinstance(t, torch.Tensor) else t.tensor()
            if t.device.type != "cpu" or not t.is_contiguous():
                t = t.detach().to("cpu").contiguous()  # one tensor at a time
            if t.numel():
                f.write(_byte_view(t))


def write_model_dir(path: str | Path, config: ModelConfig, tensors: dict[str, torch.Tensor]) -> None:
    """Write a tformer directory: ``model.safetensors`` (``tensors``), then ``config.json``, each atomically.

    ``tensors`` must hold every storage once (see :func:`unique_state_dict`); safetensors refuses aliases.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{path} exists and is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    atomic_write(path / WEIGHTS_NAME, lambda tmp: write_safetensors(tmp, tensors, metadata={"format": "pt"}))
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tformer_version": __version__,
        "model": config.to_dict(),
    }
    atomic_write(path / CONFIG_NAME, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))


@dataclass(frozen=True)
class StoredTensor:
    """Where one tensor's bytes lie in a safetensors file (``start``/``end`` count from the file's start).

    Nothing is read until :meth:`map`, :meth:`read` or :meth:`read_into` is called.
    """

    path: Path
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        """The size of the tensor's data in bytes."""
        return self.end - self.start

    @property
    def mappable(self) -> bool:
        """Whether :meth:`map` maps the file (the data is :data:`ALIGNMENT`-byte aligned and not empty)."""
        return self.nbytes > 0 and self.start % ALIGNMENT == 0

    def map(self) -> torch.Tensor:
        """The tensor as a copy-on-write memory map of its bytes: pages are read when first touched, writes
        never reach the file, and the mapping is released with the tensor. A tensor that is not
        :attr:`mappable` is read into fresh (aligned) memory instead."""
        if not self.mappable:
            return self.read()
        itemsize = torch.empty(0, dtype=self.dtype).element_size()
        page = self.start - self.start % mmap.ALLOCATIONGRANULARITY
        try:
            with open(self.path, "rb") as f:
                mapped = mmap.mmap(f.fileno(), self.end - page, access=mmap.ACCESS_COPY, offset=page)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"cannot map tensor {self.name!r} of {self.path}: {e}") from None
        count = self.nbytes // itemsize
        return torch.frombuffer(mapped, dtype=self.dtype, count=count, offset=self.start - page).view(
            self.shape
        )

    def read_into(self, out: torch.Tensor) -> None:
        """Read the bytes straight into ``out`` (a contiguous CPU tensor of this dtype and shape)."""
        if out.dtype != self.dtype or tuple(out.shape) != self.shape:
            raise ValueError(f"read_into needs a {self.dtype} tensor of shape {self.shape}")
        if out.device.type != "cpu" or not out.is_contiguous():
            raise ValueError("read_into needs a contiguous CPU tensor")
        view, done = _byte_view(out), 0
        with open(self.path, "rb", buffering=0) as f:
            f.seek(self.start)
            while done < self.nbytes:
                n = f.readinto(view[done:])
                if not n:
                    raise CheckpointError(f"{self.path} ends inside tensor {self.name!r}; is it truncated?")
                done += n

    def read(self) -> torch.Tensor:
        """A fresh tensor holding the values (read once, no mapping kept)."""
        out = torch.empty(self.shape, dtype=self.dtype)
        self.read_into(out)
        return out


def _not_safetensors(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a readable safetensors file ({why}); it may be truncated: copy or save it again"
    )


def _stored_tensor(path: Path, name: str, entry: Any, base: int, size: int) -> StoredTensor:
    """One header entry, checked: a known dtype, and a byte range of the right length inside the file."""
    try:
        dtype = SAFETENSORS_DTYPES.get(entry["dtype"])
        shape = tuple(int(d) for d in entry["shape"])
        begin, end = (int(x) for x in entry["data_offsets"])
    except (KeyError, TypeError, ValueError):
        raise _not_safetensors(path, f"malformed header entry for tensor {name!r}") from None
    if dtype is None:
        raise CheckpointError(
            f"{path}: tensor {name!r} has dtype {entry['dtype']!r}, which tformer cannot read"
        )
    numel = 1
    for d in shape:
        numel *= d
    if end - begin != numel * torch.empty(0, dtype=dtype).element_size() or begin < 0 or base + end > size:
        raise _not_safetensors(
            path, f"tensor {name!r} lies outside the file or has the wrong size (truncated?)"
        )
    return StoredTensor(path, name, dtype, shape, base + begin, base + end)


def read_safetensors_header(path: str | Path) -> dict[str, StoredTensor]:
    """Every tensor of a safetensors file, by name, from its header alone (the data is not read)."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes); the file is incomplete: copy or save it again")
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise _not_safetensors(path, "shorter than its 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise _not_safetensors(path, f"header length {n} runs past the end of the file")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _not_safetensors(path, "its header is not valid JSON") from None
    if not isinstance(header, dict):
        raise _not_safetensors(path, "its header is not a JSON object")
    header.pop("__metadata__", None)
    return {name: _stored_tensor(path, name, entry, 8 + n, size) for name, entry in header.items()}


INDEX_NAME = "model.safetensors.index.json"
PICKLE_NAME = "pytorch_model.bin"

# what scan_weights finds for each tensor: where it lies in a safetensors file, or (pytorch_model.bin) the
# tensor itself
Stored = StoredTensor | torch.Tensor


def _shard_map(index: Path) -> dict[str, list[str]]:
    """shard file name -> the tensor names a sharded checkpoint's index places in it."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{index} is not valid JSON ({e})") from None
    except (KeyError, TypeError):
        raise CheckpointError(
            f"{index} is not a valid index: expected JSON with a 'weight_map' object"
        ) from None
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{index} is not a valid index: 'weight_map' is not an object")
    shards: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or Path(shard).name != shard:
            raise CheckpointError(f"{index} places {name!r} in {shard!r}, which is not a file name")
        shards.setdefault(shard, []).append(name)
    return shards


def _scan_shards(path: Path, index: Path) -> dict[str, StoredTensor]:
    """The tensors of a sharded safetensors checkpoint, every shard checked against the index."""
    out: dict[str, StoredTensor] = {}
    for shard, names in sorted(_shard_map(index).items()):
        file = path / shard
        if not file.is_file():
            raise CheckpointError(
                f"{index} lists shard {shard}, which is missing from {path} (it names shard files that must all "
                "be there: copy the missing one)"
            )
        tensors = read_safetensors_header(file)
        lacking = sorted(set(names) - set(tensors))
        if lacking:
            raise CheckpointError(
                f"shard {file} lacks tensor {lacking[0]!r}, which {index.name} places in it"
            )
        extra = sorted(set(tensors) - set(names))
        if extra:
            raise CheckpointError(
                f"shard {file} holds tensor {extra[0]!r}, which {index.name} does not place in it"
            )
        out.update(tensors)
    return out


def _load_pickle(file: Path) -> dict[str, torch.Tensor]:
    """A pytorch_model.bin through ``torch.load(weights_only=True)``, memory-mapped when it is a zip file."""
    try:
        return torch.load(file, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(file))
    except pickle.UnpicklingError as e:  # weights_only refuses arbitrary objects: never run
        raise CheckpointError(
            f"refusing to load {file}: it is not a plain tensor file ({first_line(e)})"
        ) from None
    except Exception as e:  # a truncated zip archive, an empty file, ...
        raise CheckpointError(
            f"{file} is not a readable PyTorch weights file ({first_line(e)}); it may be truncated"
        ) from None


def scan_weights(path: Path) -> dict[str, Stored]:
    """Every tensor of a directory, unread: model.safetensors, a sharded safetensors index, or pytorch_model.bin.

    Safetensors files give a :class:`StoredTensor` per name (only their headers are read); a
    pytorch_model.bin gives tensors (memory-mapped when the file allows it).
    """
    single, index, pickle = path / WEIGHTS_NAME, path / INDEX_NAME, path / PICKLE_NAME
    if single.is_file():
        return dict(read_safetensors_header(single))
    if index.is_file():
        return dict(_scan_shards(path, index))
    if pickle.is_file():
        return dict(_load_pickle(pickle))
    raise CheckpointError(f"no weights in {path}: expected {WEIGHTS_NAME}, {INDEX_NAME} or {PICKLE_NAME}")


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a directory (see :func:`scan_weights`), safetensors ones memory-mapped."""
    return {name: t if isinstance(t, torch.Tensor) else t.map() for name, t in scan_weights(path).items()}


def available_memory() -> int | None:
    """Bytes of memory the kernel says are available (``MemAvailable``), or None where it does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_weight_names(
    expected: Mapping[str, tuple[int, ...]],
    provided: Mapping[str, tuple[int, ...]],
    source: str,
    optional: AbstractSet[str] = frozenset(),
) -> None:
    """Refuse missing, unexpected or mis-shaped tensors by name (``optional`` ones may be absent: tied aliases).

    ``expected`` and ``provided`` map names to shapes.
    """
    missing = sorted(set(expected) - set(provided) - optional)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{source} is missing weight {missing[0]!r}{more}")
    unexpected = sorted(set(provided) - set(expected))
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(
            f"{source} has unexpected weight {unexpected[0]!r}{more} that the model does not use"
        )
    for name, shape in provided.items():
        if tuple(shape) != tuple(expected[name]):
            raise CheckpointError(
                f"shape mismatch for {name!r}: {source} has {tuple(shape)}, the model expects "
                f"{tuple(expected[name])}"
            )


def load_weights(
    model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Copy ``tensors`` into ``model``, refusing missing, unexpected or mis-shaped tensors by name."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    provided = {name: tuple(t.shape) for name, t in tensors.items()}
    check_weight_names(expected, provided, source, optional=tied_aliases(model))
    model.load_state_dict(tensors, strict=False)


def read_config(path: Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a model directory (any format)."""
    cfg_path = path / CONFIG_NAME
    if not cfg_path.is_file():
        raise CheckpointError(f"{path} has no {CONFIG_NAME}; is it a model directory?")
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise CheckpointError(
            f"{cfg_path} is not a model config (a JSON {type(raw).__name__}, not an object)"
        )
    return raw


def is_tformer_config(raw: dict[str, Any]) -> bool:
    """Whether a parsed config.json was written by :func:`write_model_dir`."""
    return raw.get("format") == FORMAT


def tformer_config(raw: dict[str, Any], path: Path) -> ModelConfig:
    """The ModelConfig of a tformer config.json read from directory ``path``, refusing a newer format."""
    if raw.get("format_version", 1) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer tformer (format {raw['format_version']}); upgrade"
        )
    if not isinstance(raw.get("model"), dict):
        raise CheckpointError(f'{path / CONFIG_NAME} has no "model" settings; save the model again')
    try:
        return ModelConfig.from_dict(raw["model"])
    except ConfigError as e:
        raise ConfigError(f"{path / CONFIG_NAME}: {e}") from None
