"""Training configuration: one typed, validated dataclass beside ``ModelConfig``.

Field names never collide with ``ModelConfig``'s, so ``--set key=value`` on the command line finds its
dataclass by name alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, get_args

from tformer.config import from_known_fields
from tformer.errors import ConfigError
from tformer.peft.config import LoraConfig

#: The task names; ``tformer.training.tasks.TASKS`` maps each to the class that trains it.
TaskName = Literal["clm", "mlm", "seq2seq", "classify", "copy", "reverse", "image-classify"]
Schedule = Literal["cosine", "noam", "constant"]
Precision = Literal["auto", "fp32", "bf16"]

_LITERALS = {"task": TaskName, "schedule": Schedule, "precision": Precision}


@dataclass
class TrainConfig:
    """Every knob of a training run. Batch sizes are global: summed over data-parallel processes.

    The learning rate follows ``schedule`` as a pure function of the optimizer step:
    ``cosine`` warms up linearly for ``warmup_steps`` then decays to ``min_lr`` at ``decay_steps``;
    ``noam`` is the 2017 paper's ``lr * d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5)`` (``lr`` is
    the paper's factor); ``constant`` warms up then stays at ``lr``.
    """

    task: TaskName = "clm"
    block_size: int | None = None  # tokens per example; None: the model's max_seq_len
    batch_size: int = 16  # examples per micro-step, all processes together
    grad_accum: int = 1  # micro-steps per optimizer step
    max_steps: int = 1000  # optimizer steps from the start of the run
    max_minutes: float | None = None  # fix max_steps from the measured speed to fit this wall time

    lr: float = 1e-3
    min_lr: float = 1e-4
    schedule: Schedule = "cosine"
    warmup_steps: int = 100
    decay_steps: int | None = None  # cosine horizon; None: max_steps when the run starts (then frozen)
    weight_decay: float = 0.1  # on weight matrices only; never biases or norms
    decay_embeddings: bool = True  # False: embeddings join biases and norms without decay
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    clip_norm: float | None = 1.0  # global gradient norm; None or 0 disables clipping
    label_smoothing: float = 0.0
    router_aux_loss_coef: float = 0.01  # mixture-of-experts models: weight of the load-balancing loss
    fused_optimizer: bool = True  # torch's fused AdamW where the device supports it

    eval_every: int = 100
    eval_batches: int = 20
    log_every: int = 10
    checkpoint_every: int | None = None  # None: at every evaluation
    nan_patience: int = 5  # stop after this many non-finite losses in a row

    precision: Precision = "auto"  # auto: bf16 autocast on GPUs that support it, fp32 elsewhere
    grad_checkpointing: bool = False
    compile: bool = False  # torch.compile the model
    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    num_threads: int | None = None  # torch intra-op threads; None: torch's default

    val_fraction: float = 0.1  # held out from the end of the data (text) or at random (examples)
    tokenizer: str = "char"  # char | bpe (trained on the data) | a tokenizer directory
    tokenizer_vocab_size: int = 512  # for tokenizer=bpe
    mlm_probability: float = 0.15
    synthetic_len: int = 10  # symbols per synthetic copy/reverse example
    synthetic_symbols: int = 10  # alphabet size of the synthetic tasks
    image_shift: int = 0  # image-classify: shift training images by up to this many pixels (augmentation)

    # fine-tuning (tformer.peft)
    init_from: str | None = None  # the pretrained directory the run started from (weights, tokenizer)
    freeze: list[str] = dataclasses.field(
        default_factory=list
    )  # embeddings | layers:A-B | all-but-head | all
    lora: str | None = None  # LoRA adapters, e.g. "r=8,alpha=16,targets=q,v" (only they and the head train)
    layer_lr_decay: float = 1.0  # < 1: block i learns at lr * decay ** (top - depth)

    def __post_init__(self) -> None:
        for name, lit in _LITERALS.items():
            if getattr(self, name) not in get_args(lit):
                raise ConfigError(
                    f"{name}={getattr(self, name)!r} is not valid; choose one of {', '.join(get_args(lit))}"
                )
        for name in (
            "batch_size",
            "grad_accum",
            "max_steps",
            "eval_every",
            "eval_batches",
            "log_every",
            "nan_patience",
            "tokenizer_vocab_size",
            "synthetic_len",
            "synthetic_symbols",
        ):
            _positive_int(name, getattr(self, name))
        for name in ("block_size", "decay_steps", "checkpoint_every", "num_threads"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be a non-negative integer, got {self.warmup_steps!r}")
        if self.schedule == "noam" and self.warmup_steps < 1:
            raise ConfigError("the noam schedule needs warmup_steps >= 1")
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ConfigError(f"need 0 <= min_lr <= lr and lr > 0, got lr={self.lr}, min_lr={self.min_lr}")
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.eps <= 0 or self.weight_decay < 0:
            raise ConfigError(
                f"need eps > 0 and weight_decay >= 0, got eps={self.eps}, weight_decay={self.weight_decay}"
            )
        if self.clip_norm is not None and self.clip_norm < 0:
            raise ConfigError(f"clip_norm must be >= 0 (0 or None disables it), got {self.clip_norm}")
        for name in ("label_smoothing", "val_fraction", "mlm_probability"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.router_aux_loss_coef < 0:
            raise ConfigError(
                f"router_aux_loss_coef must be >= 0 (0 disables it), got {self.router_aux_loss_coef}"
            )
        if isinstance(self.freeze, str):
            self.freeze = [s for s in self.freeze.split(";") if s]
        if self.lora is not None:
            LoraConfig.parse(self.lora)  # a bad spec fails here, before the run starts
        if not 0.0 < self.layer_lr_decay <= 1.0:
            raise ConfigError(f"layer_lr_decay must be in (0, 1], got {self.layer_lr_decay}")
        if not isinstance(self.image_shift, int) or self.image_shift < 0:
            raise ConfigError(f"image_shift must be a non-negative integer, got {self.image_shift!r}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigError(f"max_minutes must be positive, got {self.max_minutes}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (``betas`` as a list)."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict, rejecting unknown keys with the list of valid ones."""
        return from_known_fields(cls, data, "training")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (re-validated)."""
        return self.from_dict({**self.to_dict(), **changes})


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
