"""tformer: the Transformer from scratch in PyTorch.

import tformer
model = tformer.build("gpt-tiny")              # fresh weights from a preset or a ModelConfig
model = tformer.from_pretrained("path/to/dir")  # tformer or Hugging Face directory, eval mode
tok = tformer.load_tokenizer("path/to/dir")
"""

from tformer._version import __version__
from tformer.config import ModelConfig
from tformer.errors import CheckpointError, ConfigError, DataError, TformerError
from tformer.loading import from_pretrained, save_pretrained
from tformer.models import ModelOutput, build
from tformer.presets import PRESETS, get_preset
from tformer.tokenizers import load_tokenizer

__all__ = [
    "PRESETS",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ModelConfig",
    "ModelOutput",
    "TformerError",
    "__version__",
    "build",
    "from_pretrained",
    "get_preset",
    "load_tokenizer",
    "save_pretrained",
]
