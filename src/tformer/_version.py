"""tformer's version, in a module of its own so that low modules (``tformer.io``) can name it."""

__version__ = "0.1.0"
