"""LoRA layers as module swaps: a ``LoraLinear`` wraps a frozen linear layer and adds low-rank updates.

    y = base(x) + scaling * B(A(dropout(x)))          written into the adapted output rows only

One ``LoraLinear`` may carry several adapters on disjoint row slices of its base (``q`` and ``v`` of the
fused q/k/v projection). Merging folds ``scaling * B @ A`` into the base weight (no extra cost at inference);
unmerging subtracts it again.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from tformer.errors import ConfigError
from tformer.peft.config import LoraConfig
from tformer.peft.targets import WHOLE, Site, find_sites


class LoraLinear(nn.Module):
    """A frozen ``base_layer`` (out, in) plus adapters ``lora_A[name]`` (r, in), ``lora_B[name]`` (rows, r).

    Each adapter has its own rank, scale (``scaling[name] = alpha / r``) and output rows (``rows[name]``).

    Args:
        base_layer: the layer to adapt (nn.Linear, or any layer with ``in_features``/``out_features``).
        dropout: dropout on the adapters' input during training.
    """

    def __init__(self, base_layer: nn.Module, dropout: float = 0.0) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.dropout = nn.Dropout(dropout)
        self.lora_A, self.lora_B = nn.ModuleDict(), nn.ModuleDict()
        self.rows: dict[str, tuple[int, int]] = {}  # adapter name -> output rows [start, stop)
        self.scaling: dict[str, float] = {}
        self.merged = False

    def add_adapter(
        self, name: str = WHOLE, rows: tuple[int, int] | None = None, r: int = 8, alpha: float = 8.0
    ) -> None:
        """A new adapter on ``rows`` (default: every row), initialised as PEFT does: A Kaiming, B zero."""
        if self.merged:
            raise ConfigError("cannot add a LoRA adapter to a merged layer; unmerge_lora first")
        start, stop = rows or (0, self.out_features)
        if not 0 <= start < stop <= self.out_features:
            raise ConfigError(f"LoRA rows {rows} outside the layer's {self.out_features} outputs")
        taken = [n for n, (a, b) in self.rows.items() if a < stop and start < b]
        if taken:
            raise ConfigError(f"LoRA adapter {name!r} overlaps adapter {taken[0]!r} on the same rows")
        weight = self.base_weight()
        kw = dict(bias=False, device=weight.device, dtype=weight.dtype)
        self.lora_A[name] = nn.Linear(self.in_features, r, **kw)
        self.lora_B[name] = nn.Linear(r, stop - start, **kw)
        nn.init.kaiming_uniform_(self.lora_A[name].weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B[name].weight)
        self.rows[name], self.scaling[name] = (start, stop), alpha / r

    def base_weight(self) -> torch.Tensor:
        """The wrapped layer's float weight (out, in), which merging adds the LoRA update to."""
        weight = getattr(self.base_layer, "weight", None)
        if not isinstance(weight, torch.Tensor):
            raise ConfigError(
                f"cannot read the weight of {type(self.base_layer).__name__} to merge LoRA into it"
            )
        return weight

    def delta_weight(self, name: str) -> torch.Tensor:
        """The update of adapter ``name`` to its rows of the weight: scaling * B @ A, (rows, in)."""
        return self.scaling[name] * (self.lora_B[name].weight @ self.lora_A[name].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in) -> (..., out)."""
        y = self.base_layer(x)
        if self.merged or not self.rows:
            return y
        h = self.dropout(x)
        # rebuild the output from segments, adding each adapter's update to its own rows (autograd-safe)
        segments, pos = [], 0
        for name, (start, stop) in sorted(self.rows.items(), key=lambda item: item[1]):
            segments.append(y[..., pos:start])
            update = self.lora_B[name](self.lora_A[name](h)) * self.scaling[name]  # (..., stop - start)
            segments.append(y[..., start:stop] + update)
            pos = stop
        segments.append(y[..., pos:])
        return torch.cat(segments, dim=-1)

    @torch.no_grad()
    def merge(self) -> None:
        """W[rows] += scaling * B @ A for every adapter; refused when already merged."""
        if self.merged:
            raise ConfigError("LoRA adapters are already merged; call unmerge_lora first")
        weight = self.base_weight()
        for name, (start, stop) in self.rows.items():
            weight[start:stop] += self.delta_weight(name).to(weight.dtype)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract the merged updates again (the base weights up to rounding)."""
        if not self.merged:
            raise ConfigError("LoRA adapters are not merged; nothing to unmerge")
        weight = self.base_weight()
        for name, (start, stop) in self.rows.items():
            weight[start:stop] -= self.delta_weight(name).to(weight.dtype)
        self.merged = False

    def extra_repr(self) -> str:
        """Rows adapted, rank per adapter, scaling and merge state, for ``print(model)``."""
        ranks = {n: a.out_features for n, a in self.lora_A.items()}
        return f"rows={self.rows}, ranks={ranks}, scaling={self.scaling}, merged={self.merged}"


# ---- the model-level API --------------------------------------------------------------------------------
def lora_layers(model: nn.Module) -> dict[str, LoraLinear]:
    """Every LoraLinear by its dotted path."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLinear)}


def add_lora(model: nn.Module, config: LoraConfig) -> nn.Module:
    """Swap the targeted layers for LoraLinear wrappers and make only the adapters trainable (in place).

    Returns the model. ``config.modules_to_save`` modules stay trainable in full; with ``bias`` other than
    ``"none"`` the chosen biases train too (of the adapted rows only, for ``"lora_only"``).
    """
    if lora_layers(model):
        raise ConfigError("the model already has LoRA adapters; unload_lora it before adding new ones")
    sites = find_sites(model, config.target_modules)
    saved = resolve_modules(model, config.modules_to_save)
    for p in model.parameters():
        p.requires_grad_(False)
    for site in sites:
        layer = wrap(model, site.module, config.lora_dropout)
        layer.add_adapter(site.name, site.rows, config.r, config.lora_alpha)
    for path in saved:
        model.get_submodule(path).requires_grad_(True)
    _train_biases(model, config.bias)
    model.lora_config = config
    return model


def resolve_modules(model: nn.Module, names: list[str]) -> list[str]:
    """Dotted paths of the modules named (by path or dotted suffix); a name matching nothing is an error."""
    paths = []
    modules = [n for n, _ in model.named_modules() if n]
    for name in names:
        found = [p for p in modules if p == name or p.endswith("." + name)]
        if not found:
            tops = sorted({p.split(".")[0] for p in modules})
            raise ConfigError(
                f"module {name!r} to train in full matches nothing; top-level modules: {', '.join(tops)}"
            )
        paths += [p for p in found if not any(p.startswith(q + ".") for q in found)]
    return paths


def wrap(model: nn.Module, path: str, dropout: float = 0.0) -> LoraLinear:
    """The LoraLinear at ``path``, swapping it in for the layer there if needed."""
    module = model.get_submodule(path)
    if isinstance(module, LoraLinear):
        return module
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    layer = LoraLinear(module, dropout)
    setattr(parent, attr, layer)
    return layer


def _train_biases(model: nn.Module, bias: str) -> None:
    if bias == "all":
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.requires_grad_(True)
    elif bias == "lora_only":
        for layer in lora_layers(model).values():
            b = getattr(layer.base_layer, "bias", None)
            if b is None:
                continue
            b.requires_grad_(True)
            if sum(stop - start for start, stop in layer.rows.values()) < layer.out_features:
                b.register_hook(_row_mask(layer))  # only the adapted rows of a fused layer learn


def _row_mask(layer: LoraLinear):
    mask = torch.zeros(layer.out_features)
    for start, stop in layer.rows.values():
        mask[start:stop] = 1.0
    return lambda grad: grad * mask.to(grad.device, grad.dtype)


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight; the forward pass then costs what the base model costs."""
    layers = _require_lora(model)
    if any(layer.merged for layer in layers):
        raise ConfigError("LoRA adapters are already merged; merging twice would add them twice")
    _refuse_shared_weights(model)
    for layer in layers:
        layer.merge()
    return model


def _refuse_shared_weights(model: nn.Module) -> None:
    """Merging into a weight tied to another layer (lm_head and the embedding) would change both."""
    owners: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(p), []).append(name)
    for path, layer in lora_layers(model).items():
        names = owners.get(id(getattr(layer.base_layer, "weight", None)), [])
        if len(names) > 1:
            other = next(n for n in names if not n.startswith(path + "."))
            raise ConfigError(
                f"cannot merge LoRA into {path}: its weight is tied to {other}; untie it or keep the adapter apart"
            )


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Undo ``merge_lora``: the base weights come back (up to float rounding) and the adapters act again."""
    for layer in _require_lora(model):
        layer.unmerge()
    return model


def unload_lora(model: nn.Module, merge: bool = True) -> nn.Module:
    """Replace each LoraLinear by its base layer, merged with the adapters first (``merge=True``) or not.

    The result is a plain model again (``save_pretrained`` writes the usual format).
    """
    if merge and not all(layer.merged for layer in lora_layers(model).values()):
        _refuse_shared_weights(model)
    for path, layer in lora_layers(model).items():
        if merge and not layer.merged:
            layer.merge()
        if not merge and layer.merged:
            layer.unmerge()
        parent_path, _, attr = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        setattr(parent, attr, layer.base_layer)
    if hasattr(model, "lora_config"):
        del model.lora_config
    return model


def merged_copy(model: nn.Module) -> nn.Module:
    """A plain copy of ``model`` with its adapters merged in (the model itself is left as it is)."""
    return unload_lora(copy.deepcopy(model), merge=True)


def _require_lora(model: nn.Module) -> list[LoraLinear]:
    layers = list(lora_layers(model).values())
    if not layers:
        raise ConfigError("the model has no LoRA adapters; call add_lora or load_adapter first")
    return layers


def sites_of(model: nn.Module) -> list[Site]:
    """The adapters a model carries, as sites (module path, name, rows)."""
    out = []
    for path, layer in lora_layers(model).items():
        for name, rows in layer.rows.items():
            out.append(Site(path, name, None if name == WHOLE else rows))
    return out
