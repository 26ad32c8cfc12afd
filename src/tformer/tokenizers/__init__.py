"""Tokenizers: byte-level BPE (GPT-2), WordPiece (BERT) and characters, behind one surface.

Every tokenizer has ``encode``, ``decode``, ``encode_batch`` (padding/truncation to tensors with attention
masks), ``decode_stream`` (incremental decoding for generation), ``vocab_size``, the special-token ids
(``bos_token_id``, ``eos_token_id``, ``pad_token_id``, ...) and ``save(directory)`` (tformer's file) or
``save(directory, format="hf")`` (Hugging Face's tokenizer.json), both of which :func:`load_tokenizer` reads
back.

Special tokens written in the text are refused by default (tiktoken's policy: text from users cannot inject
them); ``encode(text, allowed_special="all")`` recognises them, as Hugging Face's tokenizers always do.

Modules, bottom up: ``pretokenize``, ``stream``; ``hf_format`` (Hugging Face's tokenizer.json), ``formats``
(tformer's and the classic files), ``base``; ``corpus`` (training text); ``bpe_train`` (the merge-learning
algorithm), ``wordpiece_train`` (WordPiece's, on the same loop); ``bpe``, ``wordpiece``, ``char``; ``loading``
(which tokenizer a directory holds).

Example:
    >>> from tformer.tokenizers import ByteLevelBPETokenizer, load_tokenizer
    >>> tok = ByteLevelBPETokenizer.train(["some text to learn from"], vocab_size=300)  # doctest: +SKIP
    >>> tok.save("my_tok"); load_tokenizer("my_tok").encode("some text")  # doctest: +SKIP
"""

from tformer.tokenizers.base import Tokenizer
from tformer.tokenizers.bpe import ByteLevelBPETokenizer, train_bpe
from tformer.tokenizers.char import CharTokenizer
from tformer.tokenizers.corpus import iter_lines
from tformer.tokenizers.loading import bpe_from_gpt2_files, load_tokenizer
from tformer.tokenizers.pretokenize import CL100K_PATTERN, GPT2_PATTERN
from tformer.tokenizers.stream import DecodeStream
from tformer.tokenizers.wordpiece import WordPieceTokenizer, train_wordpiece

BPETokenizer = ByteLevelBPETokenizer

__all__ = [
    "BPETokenizer",
    "ByteLevelBPETokenizer",
    "CL100K_PATTERN",
    "CharTokenizer",
    "DecodeStream",
    "GPT2_PATTERN",
    "Tokenizer",
    "WordPieceTokenizer",
    "bpe_from_gpt2_files",
    "iter_lines",
    "load_tokenizer",
    "train_bpe",
    "train_wordpiece",
]
