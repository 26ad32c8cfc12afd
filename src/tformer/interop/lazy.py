"""Lazy tensors: what a converter maps, fuses and transposes before any weight is read.

A checkpoint's tensors arrive as :class:`LazyTensor` leaves that know only their shape and dtype
(:class:`Stored`: bytes in a file; :class:`InMemory`: a tensor already at hand). The view operations a
converter uses (``t()``, ``reshape``, indexing, ``chunk``) and :func:`cat` build new lazy tensors instead of
computing, so a whole conversion is a plan costing no memory. The loader then runs the plan one tensor at a
time, writing each straight into the model's parameter (:meth:`LazyTensor.write_into`): a fused q/k/v weight
is filled part by part, and nothing but the tensor in hand is ever held twice.

The same converter code runs on plain tensors: :func:`cat` and :func:`equal` accept both.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch

from tformer.io import StoredTensor


class LazyTensor:
    """A tensor known by shape and dtype, computed only by :meth:`tensor` or :meth:`write_into`."""

    shape: torch.Size
    dtype: torch.dtype

    def tensor(self) -> torch.Tensor:
        """The values (a view of the stored data where possible, else a new tensor)."""
        raise NotImplementedError

    def write_into(self, out: torch.Tensor) -> None:
        """Fill ``out`` (this shape; any dtype and device) with the values, casting as it copies."""
        out.copy_(self.tensor())

    @property
    def zero_copy(self) -> bool:
        """Whether :meth:`tensor` returns the stored values themselves (a memory map, or a tensor already in
        memory), contiguous and unconverted: no new memory."""
        return False

    # --- the tensor interface the converters use -----------------------------------------------------
    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    def numel(self) -> int:
        """Number of elements."""
        return self.shape.numel()

    def size(self, dim: int | None = None) -> torch.Size | int:
        """The shape, or one dimension of it."""
        return self.shape if dim is None else self.shape[dim]

    def _derive(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Derived:
        return Derived(self, fn)

    def t(self) -> LazyTensor:
        """Lazy ``Tensor.t()``."""
        return self._derive(lambda x: x.t())

    def transpose(self, dim0: int, dim1: int) -> LazyTensor:
        """Lazy ``Tensor.transpose()``."""
        return self._derive(lambda x: x.transpose(dim0, dim1))

    def reshape(self, *shape: Any) -> LazyTensor:
        """Lazy ``Tensor.reshape()``."""
        return self._derive(lambda x: x.reshape(*shape))

    def view(self, *shape: Any) -> LazyTensor:
        """Lazy ``Tensor.view()``."""
        return self._derive(lambda x: x.view(*shape))

    def narrow(self, dim: int, start: int, length: int) -> LazyTensor:
        """Lazy ``Tensor.narrow()``."""
        return self._derive(lambda x: x.narrow(dim, start, length))

    def __getitem__(self, index: Any) -> LazyTensor:
        return self._derive(lambda x: x[index])

    def chunk(self, chunks: int, dim: int = 0) -> tuple[LazyTensor, ...]:
        """Lazy ``Tensor.chunk()``: one lazy tensor per chunk."""
        n = len(torch.empty(self.shape, device="meta").chunk(chunks, dim))
        return tuple(self._derive(lambda x, i=i: x.chunk(chunks, dim)[i]) for i in range(n))

    def split(self, sizes: int | Sequence[int], dim: int = 0) -> tuple[LazyTensor, ...]:
        """Lazy ``Tensor.split()``: one lazy tensor per piece."""
        n = len(torch.empty(self.shape, device="meta").split(sizes, dim))
        return tuple(self._derive(lambda x, i=i: x.split(sizes, dim)[i]) for i in range(n))

    def contiguous(self) -> LazyTensor:
        """Itself: every materialised tensor is contiguous."""
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={tuple(self.shape)}, dtype={self.dtype})"


class Stored(LazyTensor):
    """A tensor in a safetensors file: memory-mapped when asked for its values (``mmap=True``), else read."""

    def __init__(self, stored: StoredTensor, mmap: bool = True) -> None:
        self.stored, self.mmap = stored, mmap
        self.shape, self.dtype = torch.Size(stored.shape), stored.dtype

    def tensor(self) -> torch.Tensor:
        """The stored values: memory-mapped (see ``StoredTensor.map``) or read."""
        return self.stored.map() if self.mmap else self.stored.read()

    def write_into(self, out: torch.Tensor) -> None:
        """Read the bytes straight into ``out`` when it can hold them as they are, else copy (cast) them."""
        if out.dtype == self.dtype and out.device.type == "cpu" and out.is_contiguous():
            self.stored.read_into(out)  # straight from the file: no mapping, no temporary
        else:
            out.copy_(self.tensor())  # the mapping lives only for this copy

    @property
    def zero_copy(self) -> bool:
        """Whether the values are mapped, not read (``mmap`` and an aligned tensor)."""
        return self.mmap and self.stored.mappable


class InMemory(LazyTensor):
    """A tensor already in memory (from a pickle file, or made by a converter), as a lazy leaf."""

    def __init__(self, value: torch.Tensor) -> None:
        self.value = value
        self.shape, self.dtype = value.shape, value.dtype

    def tensor(self) -> torch.Tensor:
        """The tensor itself."""
        return self.value

    @property
    def zero_copy(self) -> bool:
        """Whether the tensor can be used as it is (contiguous)."""
        return self.value.is_contiguous()


class Derived(LazyTensor):
    """A view operation (transpose, reshape, index, chunk) applied to another lazy tensor when needed."""

    def __init__(self, source: LazyTensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.source, self.fn = source, fn
        # the shape the operation gives, found on the meta device (no memory)
        probe = fn(torch.empty(source.shape, dtype=source.dtype, device="meta"))
        self.shape, self.dtype = probe.shape, probe.dtype

    def tensor(self) -> torch.Tensor:
        """The operation applied to the source's values (a view of them)."""
        return self.fn(self.source.tensor())


class Concat(LazyTensor):
    """Lazy ``torch.cat``: written part by part into slices of the output (q, k, v into one fused weight)."""

    def __init__(self, parts: Sequence[LazyTensor], dim: int = 0) -> None:
        self.parts = list(parts)
        self.dim = dim = dim % len(self.parts[0].shape)
        # torch.cat's shape rule, worked out here: torch.cat on meta tensors imports torch._dynamo (seconds)
        first = self.parts[0].shape
        if any(len(p.shape) != len(first) for p in self.parts) or any(
            p.shape[:dim] + p.shape[dim + 1 :] != first[:dim] + first[dim + 1 :] for p in self.parts
        ):
            shapes = ", ".join(str(tuple(p.shape)) for p in self.parts)
            raise ValueError(f"cannot concatenate shapes {shapes} along dim {dim}")
        self.dtype = functools.reduce(torch.promote_types, (p.dtype for p in self.parts))
        self.shape = first[:dim] + torch.Size([sum(p.shape[dim] for p in self.parts)]) + first[dim + 1 :]

    def tensor(self) -> torch.Tensor:
        """``torch.cat`` of the parts' values (a new tensor)."""
        return torch.cat([p.tensor() for p in self.parts], self.dim)

    def write_into(self, out: torch.Tensor) -> None:
        """Each part into its slice of ``out``: no concatenated temporary."""
        offset = 0
        for part in self.parts:
            size = part.shape[self.dim]
            part.write_into(out.narrow(self.dim, offset, size))
            offset += size


# what converters map: a plain tensor or a lazy one
TensorLike = torch.Tensor | LazyTensor


def as_lazy(x: TensorLike) -> LazyTensor:
    """``x`` as a lazy tensor (a plain tensor becomes an :class:`InMemory` leaf)."""
    return x if isinstance(x, LazyTensor) else InMemory(x)


def cat(parts: Sequence[TensorLike], dim: int = 0) -> TensorLike:
    """``torch.cat`` of plain tensors, or a lazy :class:`Concat` when any part is lazy."""
    if all(isinstance(p, torch.Tensor) for p in parts):
        return torch.cat(list(parts), dim)
    return Concat([as_lazy(p) for p in parts], dim)


def value(x: TensorLike) -> torch.Tensor:
    """The values of a plain or lazy tensor."""
    return x.tensor() if isinstance(x, LazyTensor) else x


def equal(a: TensorLike, b: TensorLike) -> bool:
    """``torch.equal`` for plain or lazy tensors (lazy ones are read, memory-mapped, only if shapes match)."""
    if tuple(a.shape) != tuple(b.shape):
        return False
    return torch.equal(value(a), value(b))
