"""Parameter-efficient fine-tuning: LoRA adapters (PEFT-compatible files), freezing, trainable counts.

from tformer.peft import LoraConfig, add_lora, merge_lora, save_adapter, load_adapter
add_lora(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q", "v"]))
...train...
save_adapter(model, "adapter/")      # loads in peft.PeftModel.from_pretrained for Hugging Face models
"""

from tformer.peft.adapter import load_adapter, read_adapter, save_adapter
from tformer.peft.config import LoraConfig
from tformer.peft.finetune import count_trainable, describe_trainable, freeze, transfer_weights
from tformer.peft.lora import (
    LoraLinear,
    add_lora,
    lora_layers,
    merge_lora,
    merged_copy,
    unload_lora,
    unmerge_lora,
)

__all__ = [
    "LoraConfig",
    "LoraLinear",
    "add_lora",
    "count_trainable",
    "describe_trainable",
    "freeze",
    "transfer_weights",
    "merged_copy",
    "load_adapter",
    "lora_layers",
    "merge_lora",
    "read_adapter",
    "save_adapter",
    "unload_lora",
    "unmerge_lora",
]
