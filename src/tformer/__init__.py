"""tformer: the Transformer from scratch in PyTorch.

import tformer
model = tformer.build("gpt-tiny")              # fresh weights from a preset or a ModelConfig
model = tformer.from_pretrained("path/to/dir")  # tformer or Hugging Face directory, eval mode
tok = tformer.load_tokenizer("path/to/dir")
"""

__version__ = "0.1.0"

from tformer.config import ModelConfig  # noqa: E402
from tformer.errors import CheckpointError, ConfigError, DataError, TformerError  # noqa: E402
from tformer.io import from_pretrained, save_pretrained  # noqa: E402
from tformer.models import ModelOutput, build  # noqa: E402
from tformer.presets import PRESETS, get_preset  # noqa: E402


def load_tokenizer(path):
    """Load a tokenizer directory or file (GPT-2 BPE files, WordPiece vocab.txt, or tformer's format)."""
    from tformer.tokenizers import load_tokenizer as _load

    return _load(path)


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
