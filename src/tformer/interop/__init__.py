"""Import of Hugging Face checkpoints: one converter module per family, each an explicit key map, and the
registry of them (``tformer.interop.hf.CONVERTERS``)."""
