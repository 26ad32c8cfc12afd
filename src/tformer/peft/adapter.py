"""Adapter files in PEFT's format: ``adapter_config.json`` + ``adapter_model.safetensors``.

Keys are ``base_model.model.<layer>.lora_A.weight`` / ``.lora_B.weight`` (and ``base_model.model.<param>`` for
biases and modules trained in full). For models that came from Hugging Face, ``<layer>`` is the Hugging Face
layer name (``tformer.peft.hf_names``), so ``peft.PeftModel.from_pretrained(hf_model, dir)`` reproduces
tformer's outputs, and PEFT's own adapters load here. Where the two models split layers differently:

- an adapter on tformer's whole fused q/k/v becomes one adapter per Hugging Face q/k/v layer, sharing A
  (B's rows split): delta_q = B_q A exactly;
- adapters on tformer's q and v rows, for GPT-2 whose ``c_attn`` is fused as well, become one ``c_attn``
  adapter of rank r_q + r_v: A = [A_q; A_v], B block-diagonal in the q and v rows, so B A = [B_q A_q; 0; B_v A_v].

Models with no Hugging Face origin use tformer's layer names, a row slice as ``<layer>.<slice>``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tformer.errors import CheckpointError, ConfigError
from tformer.io import atomic_write
from tformer.peft.config import LoraConfig
from tformer.peft.hf_names import HFNames, NameRule, hf_names
from tformer.peft.lora import LoraLinear, lora_layers, resolve_modules, wrap
from tformer.peft.targets import ALIASES, WHOLE, attention_sites

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PREFIX = "base_model.model."
_SLICES = ("q", "k", "v")


class Naming:
    """Layer names in the adapter file: Hugging Face's (when the model came from there) or tformer's own."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.architecture = getattr(getattr(model, "config", None), "extra", {}).get("hf_architecture")
        self.hf: HFNames | None = hf_names(self.architecture)

    def layer(self, path: str, part: str | None) -> tuple[str, NameRule | None] | None:
        """File name of tformer layer ``path`` (or its row slice ``part``)."""
        if self.hf is not None:
            return self.hf.to_hf(path, part)
        return (path if part is None else f"{path}.{part}"), None

    def parts(self, path: str) -> list[tuple[str, NameRule]]:
        """The Hugging Face name rules that map the tformer layer ``path`` to its adapter names."""
        return self.hf.parts(path) if self.hf is not None else []

    def ours(self, name: str) -> tuple[str, str | None, bool]:
        """(tformer layer, row slice or None, conv1d) of a file's layer name; CheckpointError if unknown."""
        if self.hf is not None:
            found = self.hf.from_hf(name)
            if found is not None:
                return found[0], found[1].part, found[1].conv1d
        modules = dict(self.model.named_modules())
        if name in modules:
            return name, None, False
        parent, _, last = name.rpartition(".")
        if last in _SLICES and parent in modules:
            return parent, last, False
        raise CheckpointError(f"adapter layer {name!r} names no layer of this model")


def part_rows(model: nn.Module, path: str, part: str) -> tuple[int, int]:
    """The output rows of q, k or v in the fused projection at ``path``."""
    attention = model.get_submodule(path.rpartition(".")[0])
    return attention_sites(path.rpartition(".")[0], attention, part)[0].rows


def _unwrapped(name: str) -> str:
    """A parameter's name as the plain model calls it (without LoraLinear's ``base_layer``)."""
    return name.replace(".base_layer.", ".")


# ---- saving -------------------------------------------------------------------------------------------
@torch.no_grad()
def save_adapter(model: nn.Module, directory: str | Path) -> None:
    """Write the model's adapters (and trained biases / full modules) in PEFT's format into ``directory``."""
    layers = lora_layers(model)
    if not layers:
        raise ConfigError("the model has no LoRA adapters to save; call add_lora or load_adapter first")
    if any(layer.merged for layer in layers.values()):
        raise ConfigError("the adapters are merged into the weights; unmerge_lora before save_adapter")
    config: LoraConfig = getattr(model, "lora_config", None) or LoraConfig()
    naming = Naming(model)
    tensors: dict[str, torch.Tensor] = {}
    ranks: dict[str, tuple[int, float]] = {}  # file layer -> (r, alpha)
    for path, layer in layers.items():
        _export_layer(model, naming, path, layer, tensors, ranks)
    saved = _export_full_modules(model, naming, config, tensors)
    _export_biases(model, naming, config, tensors, set(ranks))
    meta = _peft_config(naming, config, ranks, saved)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}  # shared A: own copies
    atomic_write(directory / ADAPTER_WEIGHTS, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    atomic_write(
        directory / ADAPTER_CONFIG, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n")
    )


def _export_layer(model, naming: Naming, path: str, layer: LoraLinear, tensors, ranks) -> None:
    fused: list[tuple[tuple[int, int], torch.Tensor, torch.Tensor, float]] = []
    for name, (start, stop) in layer.rows.items():
        A, B, scaling = layer.lora_A[name].weight, layer.lora_B[name].weight, layer.scaling[name]
        part = None if name == WHOLE else name
        direct = naming.layer(path, part)
        if direct is not None:
            _put(tensors, ranks, direct[0], A, B, scaling)
        elif part is None and naming.parts(path):  # HF keeps q, k, v apart: one adapter each, A shared
            for hf_name, rule in naming.parts(path):
                a, b = part_rows(model, path, rule.part)
                _put(tensors, ranks, hf_name, A, B[a:b], scaling)
        elif part is not None and naming.layer(path, None) is not None:  # HF fuses them too (GPT-2)
            fused.append(((start, stop), A, B, scaling))
        else:
            raise ConfigError(
                f"LoRA on {path} ({name}) has no counterpart in the Hugging Face {naming.architecture} model"
            )
    if fused:  # one adapter on the whole layer: A stacked, B block-diagonal in each part's rows
        scaling = fused[0][3]
        A = torch.cat([f[1] for f in fused])  # (sum r, in)
        B = A.new_zeros(layer.out_features, A.shape[0])
        col = 0
        for (start, stop), a, b, s in fused:
            B[start:stop, col : col + a.shape[0]] = b * (s / scaling)  # one scale for all parts
            col += a.shape[0]
        _put(tensors, ranks, naming.layer(path, None)[0], A, B, scaling)


def _put(tensors, ranks, name: str, A: torch.Tensor, B: torch.Tensor, scaling: float) -> None:
    tensors[f"{PREFIX}{name}.lora_A.weight"] = A
    tensors[f"{PREFIX}{name}.lora_B.weight"] = B
    ranks[name] = (A.shape[0], scaling * A.shape[0])


def _full_tensor_names(naming: Naming, name: str, model: nn.Module) -> list[tuple[str, slice | None, bool]]:
    """File names of tformer parameter ``name`` (plain name): [(file name, rows or None, transpose)]."""
    module, _, kind = name.rpartition(".")
    direct = naming.layer(module, None)
    if direct is not None:
        return [(f"{direct[0]}.{kind}", None, bool(direct[1] and direct[1].conv1d and kind == "weight"))]
    if naming.parts(module) and kind == "bias":
        return [
            (f"{hf}.bias", slice(*part_rows(model, module, rule.part)), False)
            for hf, rule in naming.parts(module)
        ]
    raise ConfigError(f"parameter {name} has no counterpart in the Hugging Face {naming.architecture} model")


def _export_full_modules(model, naming: Naming, config: LoraConfig, tensors) -> list[str]:
    """Parameters of ``modules_to_save``; returns the file's names of the layers holding them (for the config)."""
    saved: list[str] = []
    for path in resolve_modules(model, config.modules_to_save):
        for pname, p in model.get_submodule(path).named_parameters():
            for file_name, rows, transpose in _full_tensor_names(
                naming, _unwrapped(f"{path}.{pname}"), model
            ):
                t = p if rows is None else p[rows]
                tensors[PREFIX + file_name] = t.t() if transpose else t
                layer = file_name.rpartition(".")[0]
                if layer not in saved:
                    saved.append(layer)
    return saved


def _export_biases(model, naming: Naming, config: LoraConfig, tensors, adapted_layers: set[str]) -> None:
    """Trained biases; PEFT names a bias of an adapted layer ``<layer>.base_layer.bias``."""
    if config.bias == "none":
        return
    adapted = {(path, n) for path, layer in lora_layers(model).items() for n in layer.rows}
    saved_modules = resolve_modules(model, config.modules_to_save)
    for name, p in model.named_parameters():
        plain = _unwrapped(name)
        in_saved = any(plain.startswith(m + ".") for m in saved_modules)
        if not plain.endswith("bias") or not p.requires_grad or in_saved:
            continue
        module = plain.rpartition(".")[0]
        for file_name, rows, _ in _full_tensor_names(naming, plain, model):
            if config.bias == "lora_only" and rows is not None:
                part = next(r.part for hf, r in naming.parts(module) if file_name == f"{hf}.bias")
                if (module, part) not in adapted and (module, WHOLE) not in adapted:
                    continue
            layer_name = file_name.rpartition(".")[0]
            if layer_name in adapted_layers:
                file_name = f"{layer_name}.base_layer.bias"
            tensors[PREFIX + file_name] = p if rows is None else p[rows]


def _peft_config(
    naming: Naming, config: LoraConfig, ranks: dict[str, tuple[int, float]], saved: list[str]
) -> dict:
    """adapter_config.json: PEFT's LoraConfig fields; target_modules are exact layer names."""
    r, alpha = Counter(ranks.values()).most_common(1)[0][0]
    return {
        "peft_type": "LORA",
        "task_type": None,
        "base_model_name_or_path": None,
        "inference_mode": True,
        "r": r,
        "lora_alpha": alpha,
        "lora_dropout": config.lora_dropout,
        "target_modules": sorted(ranks),
        "rank_pattern": {k: v[0] for k, v in ranks.items() if v != (r, alpha)},
        "alpha_pattern": {k: v[1] for k, v in ranks.items() if v != (r, alpha)},
        "bias": config.bias,
        "modules_to_save": saved or None,
        "fan_in_fan_out": any(naming.ours(name)[2] for name in ranks),  # GPT-2's Conv1D layers
        "init_lora_weights": True,
        "use_dora": False,
        "use_rslora": False,
        "layers_to_transform": None,
        "layers_pattern": None,
    }


# ---- loading ------------------------------------------------------------------------------------------
def read_adapter(directory: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(adapter_config.json as a dict, tensors) of an adapter directory, checked for what tformer supports."""
    directory = Path(directory)
    cfg_path, weights = directory / ADAPTER_CONFIG, directory / ADAPTER_WEIGHTS
    if not cfg_path.is_file() or not weights.is_file():
        raise CheckpointError(
            f"{directory} is not an adapter directory: it needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}"
        )
    try:
        meta = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {e}") from None
    if meta.get("peft_type", "LORA") != "LORA":
        raise CheckpointError(
            f"{cfg_path} holds a {meta['peft_type']} adapter; tformer loads LoRA adapters only"
        )
    for flag in ("use_dora", "use_rslora"):
        if meta.get(flag):
            raise CheckpointError(f"{cfg_path} sets {flag}=true, which tformer does not support")
    return meta, load_file(weights)


def _pattern_value(patterns: dict[str, Any], name: str, default: Any) -> Any:
    """PEFT's rank_pattern / alpha_pattern lookup: the first key matching the end of the layer name."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return default


def load_adapter(model: nn.Module, directory: str | Path) -> nn.Module:
    """Add the adapters of a PEFT-format directory to ``model`` (in place; only adapters stay trainable).

    Every tensor is checked against the model first: a layer it lacks or a shape it does not have is an
    error naming the first such tensor, and the model is left untouched.
    """
    if lora_layers(model):
        raise ConfigError(
            "the model already has LoRA adapters; unload_lora it before loading another adapter"
        )
    meta, tensors = read_adapter(directory)
    naming = Naming(model)
    lora, full = _split_keys(tensors)
    plans = [_plan_layer(model, naming, meta, name, pair) for name, pair in sorted(lora.items())]
    copies = [_plan_full(model, naming, key, t) for key, t in sorted(full.items())]
    saved_names = meta.get("modules_to_save") or []
    saved = sorted({c[0].rpartition(".")[0] for c in copies if any(_ends_with(c[3], s) for s in saved_names)})
    config = LoraConfig(
        r=int(meta.get("r", 8)),
        lora_alpha=float(meta.get("lora_alpha", 8)),
        lora_dropout=float(meta.get("lora_dropout", 0.0)),
        target_modules=sorted(
            {
                part or ALIASES.get(path.rpartition(".")[2], path.rpartition(".")[2])
                for path, part, *_ in plans
            }
        ),
        bias=meta.get("bias", "none"),
        modules_to_save=saved,
    )
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        for path, part, rows, r, alpha, A, B in plans:
            layer = wrap(model, path, config.lora_dropout)
            name = part or WHOLE
            layer.add_adapter(name, rows, r, alpha)
            layer.lora_A[name].weight.copy_(A)
            layer.lora_B[name].weight.copy_(B)
        params = {_unwrapped(n): p for n, p in model.named_parameters()}
        for pname, rows, value, _ in copies:
            target = params[pname] if rows is None else params[pname][rows]
            target.copy_(value)
    for path in saved:
        model.get_submodule(path).requires_grad_(True)
    for name, p in model.named_parameters():
        if config.bias != "none" and _unwrapped(name) in {c[0] for c in copies}:
            p.requires_grad_(True)
    model.lora_config = config
    return model


def _ends_with(name: str, suffix: str) -> bool:
    """Whether layer ``name`` is module ``suffix`` (PEFT matches module names by dotted suffix) or inside it."""
    parts = name.split(".")
    prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(p == suffix or p.endswith("." + suffix) for p in prefixes)


def _split_keys(tensors: dict[str, torch.Tensor]):
    """{layer: {"A": key, "B": key}} of LoRA tensors, and {key: tensor} of full tensors."""
    lora: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    full: dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        if not key.startswith(PREFIX):
            raise CheckpointError(
                f"adapter tensor {key!r} does not start with {PREFIX!r}: not a PEFT adapter file"
            )
        m = re.fullmatch(r"(.+)\.lora_([AB])\.weight", key[len(PREFIX) :])
        if m:
            lora.setdefault(m.group(1), {})[m.group(2)] = (key, t)
        elif ".lora_" in key:
            raise CheckpointError(f"adapter tensor {key!r} is of a LoRA kind tformer does not support")
        else:
            full[key] = t
    for name, pair in lora.items():
        for side in "AB":
            if side not in pair:
                raise CheckpointError(f"adapter is missing tensor {PREFIX}{name}.lora_{side}.weight")
    return lora, full


def _mismatch(key: str, t: torch.Tensor, path: str, expected: tuple) -> CheckpointError:
    return CheckpointError(
        f"adapter tensor {key!r} has shape {tuple(t.shape)} but layer {path} of this model needs {expected}: "
        "the adapter was made for another base model"
    )


def _plan_layer(model, naming: Naming, meta: dict, name: str, pair):
    """(tformer layer, part, rows, r, alpha, A, B) of one file layer, checked against the model."""
    (key_a, A), (key_b, B) = pair["A"], pair["B"]
    try:
        path, part, _ = naming.ours(name)
    except CheckpointError:
        raise CheckpointError(
            f"adapter tensor {key_a!r} targets layer {name!r}, which this model lacks: the adapter was made for another base model"
        ) from None
    module = model.get_submodule(path)
    if not hasattr(module, "in_features"):
        raise CheckpointError(f"adapter tensor {key_a!r} targets {path}, which is not a linear layer")
    r = int(_pattern_value(meta.get("rank_pattern") or {}, name, meta.get("r", 8)))
    alpha = float(_pattern_value(meta.get("alpha_pattern") or {}, name, meta.get("lora_alpha", 8)))
    rows = part_rows(model, path, part) if part else (0, module.out_features)
    if tuple(A.shape) != (r, module.in_features):
        raise _mismatch(key_a, A, path, (r, module.in_features))
    if tuple(B.shape) != (rows[1] - rows[0], r):
        raise _mismatch(key_b, B, path, (rows[1] - rows[0], r))
    return path, part, (rows if part else None), r, alpha, A, B


def _plan_full(model, naming: Naming, key: str, t: torch.Tensor):
    """(tformer parameter, rows or None, value, file layer) of a full tensor (bias or saved module)."""
    layer_name, _, kind = key[len(PREFIX) :].rpartition(".")
    layer_name = layer_name.removesuffix(".base_layer")  # PEFT's name for the bias of an adapted layer
    try:
        path, part, conv1d = naming.ours(layer_name)
    except CheckpointError:
        raise CheckpointError(
            f"adapter tensor {key!r} names no parameter of this model: the adapter was made for another base model"
        ) from None
    params = {_unwrapped(n): p for n, p in model.named_parameters()}
    pname = f"{path}.{kind}"
    if pname not in params:
        raise CheckpointError(f"adapter tensor {key!r} names no parameter of this model ({pname})")
    value = t.t() if conv1d and kind == "weight" else t
    rows = slice(*part_rows(model, path, part)) if part else None
    expected = tuple(params[pname][rows].shape if rows else params[pname].shape)
    if tuple(value.shape) != expected:
        raise _mismatch(key, t, path, expected)
    return pname, rows, value, layer_name
