"""LoRA configuration: one validated dataclass, parsed from the command line or PEFT's ``adapter_config.json``.

LoRA (Hu et al. 2021) freezes a weight W (out, in) and learns a low-rank update: W' = W + (alpha / r) * B A
with A (r, in) and B (out, r). B starts at zero, so a fresh adapter leaves the model unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from tformer.errors import ConfigError

Bias = Literal["none", "all", "lora_only"]

# command-line keys (``--lora r=8,alpha=16,targets=q,v``) -> LoraConfig fields
_CLI_KEYS = {
    "r": "r",
    "alpha": "lora_alpha",
    "lora_alpha": "lora_alpha",
    "dropout": "lora_dropout",
    "lora_dropout": "lora_dropout",
    "targets": "target_modules",
    "target_modules": "target_modules",
    "bias": "bias",
    "save": "modules_to_save",
    "modules_to_save": "modules_to_save",
}


@dataclass
class LoraConfig:
    """Where and how large the low-rank adapters are.

    Args:
        r: rank of each update (>= 1).
        lora_alpha: the update is scaled by ``lora_alpha / r``.
        lora_dropout: dropout on the adapter's input during training.
        target_modules: names of the layers to adapt: ``q``, ``k``, ``v`` (rows of the fused projection),
            ``qkv``, ``o``, ``up``, ``gate``, ``down``, Hugging Face names (``q_proj``, ``query``, ``c_attn``,
            ...), or the dotted suffix of any linear layer (``lm_head``, ``head.dense``).
        bias: ``"none"``; ``"lora_only"`` trains the biases of the adapted rows; ``"all"`` trains every bias.
        modules_to_save: modules trained in full and stored in the adapter (a new task head, e.g. ``head``).
    """

    r: int = 8
    lora_alpha: float = 8.0
    lora_dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q", "v"])
    bias: Bias = "none"
    modules_to_save: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise ConfigError(f"LoRA rank r must be an integer >= 1, got {self.r!r}")
        if self.lora_alpha <= 0:
            raise ConfigError(f"lora_alpha must be positive, got {self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if isinstance(self.target_modules, str):
            self.target_modules = [self.target_modules]
        self.target_modules = [t for t in self.target_modules if t]
        if not self.target_modules:
            raise ConfigError("LoRA needs at least one target module, e.g. target_modules=['q', 'v']")
        if self.bias not in get_args(Bias):
            raise ConfigError(f"bias={self.bias!r} is not valid; choose one of {', '.join(get_args(Bias))}")
        if isinstance(self.modules_to_save, str):
            self.modules_to_save = [self.modules_to_save]
        self.modules_to_save = list(self.modules_to_save or [])

    @property
    def scaling(self) -> float:
        """The factor on B A."""
        return self.lora_alpha / self.r

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict (for ``adapter_config.json``)."""
        return asdict(self)

    @classmethod
    def parse(cls, text: str) -> LoraConfig:
        """From ``"r=8,alpha=16,targets=q,v"``: a bare item after ``targets=`` (or ``save=``) adds to that list.

        Example: ``parse("r=4,targets=q,v,dropout=0.1")`` -> r=4, target_modules=["q", "v"], lora_dropout=0.1.
        """
        values: dict[str, Any] = {}
        current: str | None = None
        for item in (s.strip() for s in text.split(",")):
            if not item:
                continue
            if "=" in item:
                key, value = (s.strip() for s in item.split("=", 1))
                if key not in _CLI_KEYS:
                    raise ConfigError(f"unknown LoRA option {key!r}; valid: {', '.join(sorted(_CLI_KEYS))}")
                current = _CLI_KEYS[key]
                values[current] = [value] if current in ("target_modules", "modules_to_save") else value
            elif current in ("target_modules", "modules_to_save"):
                values[current].append(item)
            else:
                raise ConfigError(f"LoRA option {item!r} is not KEY=VALUE (e.g. r=8,alpha=16,targets=q,v)")
        try:
            for name, kind in (("r", int), ("lora_alpha", float), ("lora_dropout", float)):
                if name in values:
                    values[name] = kind(values[name])
        except ValueError as e:
            raise ConfigError(f"bad LoRA number: {e}") from None
        return cls(**values)
