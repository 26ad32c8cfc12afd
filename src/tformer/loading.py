"""Load and save models: tformer's own directories and Hugging Face's.

A directory holds ``config.json`` and weights. tformer's config.json has ``"format": "tformer"`` (see
``tformer.io``); one with ``"architectures"`` / ``"model_type"`` is converted by the family converter that
``tformer.interop.hf.CONVERTERS`` names. This module decides which, builds the model and loads the weights,
and the generation defaults of a ``generation_config.json`` in either kind of directory.

Saving: ``save_pretrained(model, path, format="tformer" | "hf")``. The formats are a registry in
``tformer.models.formats``; importing ``tformer.interop.export`` here registers ``"hf"``, so
``model.save_pretrained(path, format="hf")`` works as soon as ``tformer`` is imported.

Loading costs about the weights' own size: the model is built on the meta device (no memory, no random
initialisation); the checkpoint's tensors are scanned, not read (``io.scan_weights``); a Hugging Face
converter maps them into a plan of lazy tensors (``interop.lazy``); then each parameter is materialised in
model order, module by module: a tensor stored as the model wants it (same dtype, on the CPU, aligned) stays
a copy-on-write memory map of the file, anything else (fused, transposed, cast, misaligned) is written once
into its final tensor. Sharded checkpoints need no whole shard in memory: each tensor is read from its shard
when its turn comes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tformer import io
from tformer.config import ModelConfig
from tformer.errors import CheckpointError, ConfigError
from tformer.generation.hf_config import read_generation_config
from tformer.interop import export, hf
from tformer.interop.lazy import LazyTensor, Stored, TensorLike, as_lazy
from tformer.models import TransformerModel, build_empty, reset_buffers

# dtype names accepted by from_pretrained (and the CLI's --dtype), besides "auto" and torch dtypes
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float64": torch.float64,
}
DTYPE_ALIASES = {
    "fp32": "float32",
    "float": "float32",
    "bf16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
}

# Called with a module's qualified name once every tensor it owns is materialised; returns a replacement
# module (e.g. a quantised linear) or None to keep it. Modules are visited in model order, so a hook that
# shrinks each layer keeps the peak at the shrunk model plus about one layer.
ModuleHook = Callable[[str, nn.Module], nn.Module | None]


def _model_dir(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model directory {path} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory; pass a directory holding config.json and weights")
    return path


def _not_a_model_config(path: Path) -> ConfigError:
    return ConfigError(f"{path / io.CONFIG_NAME} is neither a tformer nor a Hugging Face config")


def read_model_config(path: str | Path) -> ModelConfig:
    """The ModelConfig of a model directory in either format, without reading its weights."""
    path = _model_dir(path)
    return _config(path, io.read_config(path))[0]


# --- dtype ---------------------------------------------------------------------------------------------
def requested_dtype(dtype: torch.dtype | str | None, path: Path) -> torch.dtype | None:
    """A floating torch dtype, or None for ``"auto"``; a one-line ValueError for anything else."""
    if dtype is None or dtype == "auto":
        return None
    if isinstance(dtype, str):
        name = DTYPE_ALIASES.get(dtype, dtype)
        if name not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose auto, {', '.join(DTYPES)}")
        return DTYPES[name]
    if not isinstance(dtype, torch.dtype) or dtype not in DTYPES.values():
        raise ValueError(
            f"cannot load {path} as {dtype}: weights load as a floating dtype ({', '.join(DTYPES)}) or "
            "'auto' (integer weights come from quantisation, not from a cast)"
        )
    return dtype


def checkpoint_dtype(raw: dict[str, Any], plan: Mapping[str, TensorLike]) -> torch.dtype:
    """What ``dtype="auto"`` keeps: config.json's ``dtype``/``torch_dtype`` (Hugging Face), else the floating
    dtype holding most of the tensors' bytes, else float32."""
    for key in ("dtype", "torch_dtype"):
        name = raw.get(key)
        if isinstance(name, str) and DTYPE_ALIASES.get(name, name) in DTYPES:
            return DTYPES[DTYPE_ALIASES.get(name, name)]
    nbytes: dict[torch.dtype, int] = {}
    for t in plan.values():
        if t.dtype.is_floating_point:
            nbytes[t.dtype] = nbytes.get(t.dtype, 0) + t.numel() * t.dtype.itemsize
    return max(nbytes, key=nbytes.__getitem__) if nbytes else torch.float32


# --- materialising a meta model ------------------------------------------------------------------------
@dataclass
class _Slot:
    """One tensor of a meta model: its state-dict names (several when tied) and every (module, attribute,
    is_parameter) holding it."""

    meta: torch.Tensor
    names: list[str] = field(default_factory=list)
    holders: list[tuple[nn.Module, str, bool]] = field(default_factory=list)


def _slots(model: nn.Module) -> dict[int, list[_Slot]]:
    """id(module) -> the slots of the stored tensors it holds, in model order (a tied tensor has one slot,
    listed under each module holding it; non-persistent buffers are recomputed, not stored)."""
    persistent = set(model.state_dict(keep_vars=True))
    by_tensor: dict[int, _Slot] = {}
    by_module: dict[int, list[_Slot]] = {}
    for prefix, module in model.named_modules(remove_duplicate=False):
        owned = [(n, t, True) for n, t in module.named_parameters(recurse=False, remove_duplicate=False)]
        owned += [(n, t, False) for n, t in module.named_buffers(recurse=False, remove_duplicate=False)]
        for attr, t, is_param in owned:
            name = f"{prefix}.{attr}" if prefix else attr
            if name not in persistent:
                continue
            slot = by_tensor.setdefault(id(t), _Slot(t))
            slot.names.append(name)
            module_slots = by_module.setdefault(id(module), [])
            if all(attr != a for m, a, _ in slot.holders if m is module):  # a shared module is seen twice
                slot.holders.append((module, attr, is_param))
                module_slots.append(slot)
    return by_module


def _keeps_storage(value: LazyTensor, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the stored tensor itself becomes the parameter (no copy): unconverted, right dtype, on CPU."""
    return value.zero_copy and value.dtype == dtype and device.type == "cpu"


def _target_dtype(value: LazyTensor, dtype: torch.dtype) -> torch.dtype:
    return dtype if value.dtype.is_floating_point else value.dtype  # integer tensors keep theirs


def _check_memory(
    plan: Mapping[str, LazyTensor], dtype: torch.dtype, device: torch.device, path: Path
) -> None:
    """Refuse up front when the tensors to allocate exceed the memory the kernel says is available."""
    if device.type != "cpu":
        return
    need = sum(
        v.numel() * _target_dtype(v, dtype).itemsize
        for v in plan.values()
        if not _keeps_storage(v, _target_dtype(v, dtype), device)
    )
    available = io.available_memory()
    if available is not None and need > available:
        raise CheckpointError(
            f"loading {path} as {dtype} needs {need / 2**30:.2f} GiB of memory, but only "
            f"{available / 2**30:.2f} GiB is available; free memory or pick a smaller dtype"
        )


def _materialize(value: LazyTensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The final tensor of one plan entry: the stored tensor itself when it can be, else written once."""
    target = _target_dtype(value, dtype)
    if _keeps_storage(value, target, device):
        return value.tensor()
    out = torch.empty(value.shape, dtype=target, device=device)
    value.write_into(out)
    return out


def _assign(slot: _Slot, plan: dict[str, LazyTensor], dtype: torch.dtype, device: torch.device) -> None:
    """Materialise one slot from the plan (dropping the plan's reference) and set it on every holder."""
    value = plan.pop(next(n for n in slot.names if n in plan))
    tensor = _materialize(value, dtype, device)
    if any(is_param for _, _, is_param in slot.holders):
        tensor = nn.Parameter(tensor, requires_grad=slot.meta.requires_grad)
    for holder, attr, _ in slot.holders:  # one object for all holders: ties survive
        setattr(holder, attr, tensor)


def _replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, new)


def load_plan(
    model: nn.Module,
    plan: Mapping[str, TensorLike],
    *,
    dtype: torch.dtype,
    device: torch.device | str | None = None,
    source: str = "checkpoint",
    module_hook: ModuleHook | None = None,
    where: Path | None = None,
) -> None:
    """Materialise a model built on the meta device from ``plan`` (state-dict name -> tensor, lazy or not).

    Names are checked first (missing, unexpected, mis-shaped: one-line errors naming the tensor), then memory
    (when ``where`` names the checkpoint); tensors are then materialised module by module in model order,
    tied ones once, and ``module_hook`` (see :data:`ModuleHook`) sees each module as soon as it is complete.
    Derived buffers (RoPE frequencies...) are recomputed last.
    """
    device = torch.device(device or "cpu")
    plan = {name: as_lazy(t) for name, t in plan.items()}
    by_module = _slots(model)
    unique = list({id(s): s for slots in by_module.values() for s in slots}.values())
    expected = {name: tuple(s.meta.shape) for s in unique for name in s.names}
    optional = {n for s in unique if any(n in plan for n in s.names) for n in s.names}
    io.check_weight_names(expected, {n: tuple(t.shape) for n, t in plan.items()}, source, optional)
    if where is not None:
        _check_memory(plan, dtype, device, where)
    done: set[int] = set()
    for prefix, module in list(model.named_modules()):
        owned = by_module.get(id(module), [])
        for slot in owned:
            if id(slot) not in done:
                _assign(slot, plan, dtype, device)
                done.add(id(slot))
        if owned and module_hook is not None:
            replacement = module_hook(prefix, module)
            if replacement is not None and replacement is not module:
                _replace_module(model, prefix, replacement)
    reset_buffers(model, device)
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_meta:
            raise RuntimeError(
                f"{name} is still on the meta device: its module needs a reset_buffers() method"
            )


# --- the public entry points ---------------------------------------------------------------------------
def _config(path: Path, raw: dict[str, Any]) -> tuple[ModelConfig, str | None]:
    """The config of either format and, for Hugging Face, the architecture (before any weight is scanned)."""
    if io.is_tformer_config(raw):
        return io.tformer_config(raw, path), None
    if hf.is_hf_config(raw):
        arch, conv = hf.converter(raw)
        return conv.config_from_hf(raw, arch), arch
    raise _not_a_model_config(path)


def _plan(
    path: Path, config: ModelConfig, arch: str | None, mmap: bool
) -> tuple[ModelConfig, dict[str, TensorLike], str]:
    """The (refined) config, the state-dict plan of lazy tensors, and the name errors give the checkpoint."""
    stored = {
        name: Stored(t, mmap) if isinstance(t, io.StoredTensor) else t
        for name, t in io.scan_weights(path).items()
    }
    if arch is None:
        return config, stored, str(path / io.WEIGHTS_NAME)
    conv = hf.CONVERTERS[arch]
    config = conv.refine_config(config, stored, arch)
    return config, conv.state_dict_from_hf(stored, config, arch), f"{arch} checkpoint in {path}"


def from_pretrained(
    path: str | Path,
    *,
    dtype: torch.dtype | str | None = "auto",
    device: torch.device | str | None = None,
    attn_impl: str | None = None,
    mmap: bool = True,
    module_hook: ModuleHook | None = None,
) -> TransformerModel:
    """Load a model directory (tformer or Hugging Face format) and return the model in eval mode.

    Args:
        dtype: ``"auto"`` (default) keeps the checkpoint's dtype (see :func:`checkpoint_dtype`); or a floating
            torch dtype or its name (``"float32"``, ``"bfloat16"``, ``"float16"``).
        device: where the weights are materialised (default CPU).
        mmap: keep tensors that need no conversion (and are 64-byte aligned in the file, as tformer writes
            them) as copy-on-write memory maps (loading is then nearly free and pages come in on first use);
            ``False`` reads everything into memory.
        module_hook: see :data:`ModuleHook` (the place for quantise-on-load).

    Raises:
        CheckpointError / ConfigError: a bad directory, config, index, shard or tensor (one line, naming it),
            or more memory needed than is available. ValueError: a dtype weights cannot be cast to.
    """
    path = _model_dir(path)
    wanted = requested_dtype(dtype, path)
    raw = io.read_config(path)
    config, plan, source = _plan(path, *_config(path, raw), mmap)
    model = build_empty(config)
    load_plan(
        model,
        plan,
        dtype=wanted or checkpoint_dtype(raw, plan),
        device=device,
        source=source,
        module_hook=module_hook,
        where=path,
    )
    defaults = read_generation_config(path)
    if defaults is not None:
        model.generation_config = defaults
    if attn_impl is not None:
        model.set_attn_impl(attn_impl)
    return model.eval()


def save_pretrained(
    model: TransformerModel, path: str | Path, format: str = "tformer", **options: Any
) -> None:
    """Write ``model`` into directory ``path`` in ``format``.

    ``"tformer"``: config.json and model.safetensors, each atomically (and generation_config.json when the
    model has generation defaults; ``tokenizer=`` saves its files too). ``"hf"``: a directory that
    ``transformers`` loads (:func:`tformer.interop.export.save_hf`: ``tokenizer=``, ``overwrite=``,
    ``architecture=``).
    """
    if format == "hf":
        export.save_hf(model, path, **options)
    else:
        model.save_pretrained(path, format=format, **options)
