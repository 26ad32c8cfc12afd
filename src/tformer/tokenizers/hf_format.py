"""Hugging Face's ``tokenizer.json`` (the ``tokenizers`` library's file) and ``tokenizer_config.json``, both ways.

This module translates between those files and tformer's tokenizer document (what ``tformer_tokenizer.json``
holds: a header and the fields of one tokenizer type, see :mod:`tformer.tokenizers.formats`); it knows no
tokenizer class. What the format holds of each kind:

- byte-level BPE: everything. GPT-2's pattern is the ``ByteLevel`` pre-tokenizer's own regex; another pattern
  is a ``Split`` (isolated matches) before a ``ByteLevel`` without regex. Special tokens are added tokens.
- WordPiece: everything (``BertNormalizer``, ``BertPreTokenizer``, ``WordPiece``, and the ``[CLS] A [SEP]`` /
  ``[CLS] A [SEP] B [SEP]`` framing with token types as ``TemplateProcessing``).
- characters: a ``BPE`` model without merges over the characters (a text without a pre-tokenizer is one word,
  which BPE splits into characters) and a ``Fuse`` decoder. An unknown character becomes the unknown token
  (``unknown="replace"``) or is dropped (``"skip"``); tformer's ``"error"`` has no equivalent and is written
  as ``"skip"``, which is what reading the file back gives.

Special tokens in the text: Hugging Face always recognises added tokens written in the text; tformer refuses
them unless ``encode(..., allowed_special=...)`` allows them (tiktoken's policy), so
``allowed_special="all"`` gives Hugging Face's ids.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tformer.errors import ConfigError
from tformer.tokenizers.pretokenize import GPT2_PATTERN, pattern_name, resolve_pattern

HF_FILE = "tokenizer.json"
HF_CONFIG_FILE = "tokenizer_config.json"
ROLES = ("bos", "eos", "pad", "unk", "mask", "cls", "sep")

_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}


# ---- writing ----------------------------------------------------------------------------------------
def _added_tokens(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The special tokens as Hugging Face added tokens, matched in the raw text (not normalised)."""
    flags = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
    return [
        {"id": i, "content": t, **flags}
        for t, i in sorted(doc["special_tokens"].items(), key=lambda kv: kv[1])
    ]


def _bpe_model(
    vocab: dict[str, int], merges: list[list[str]], unk_token: str | None = None
) -> dict[str, Any]:
    return {
        "type": "BPE",
        "dropout": None,
        "unk_token": unk_token,
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": False,
        "byte_fallback": False,
        "ignore_merges": False,
        "vocab": vocab,
        "merges": merges,
    }


def _byte_bpe_json(doc: dict[str, Any]) -> dict[str, Any]:
    pattern = resolve_pattern(doc["pattern"])
    if pattern == GPT2_PATTERN:
        pre: dict[str, Any] = dict(_BYTE_LEVEL)
    else:
        split = {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}
        pre = {"type": "Sequence", "pretokenizers": [split, {**_BYTE_LEVEL, "use_regex": False}]}
    vocab = {**doc["vocab"], **doc["special_tokens"]}  # as for characters below: specials in the model too
    merges = [line.split(" ") for line in doc["merges"]]
    return {
        "normalizer": None,
        "pre_tokenizer": pre,
        "post_processor": {**_BYTE_LEVEL, "trim_offsets": False},
        "decoder": dict(_BYTE_LEVEL),
        "model": _bpe_model(dict(sorted(vocab.items(), key=lambda kv: kv[1])), merges),
    }


def _bert_framing(doc: dict[str, Any]) -> dict[str, Any] | None:
    """``[CLS] A [SEP]`` and ``[CLS] A [SEP] B [SEP]`` (B's part of type 1), or None without [CLS]/[SEP]."""
    cls, sep = doc["roles"].get("cls"), doc["roles"].get("sep")
    if cls is None or sep is None:
        return None

    def special(token: str, type_id: int) -> dict[str, Any]:
        return {"SpecialToken": {"id": token, "type_id": type_id}}

    def seq(name: str, type_id: int) -> dict[str, Any]:
        return {"Sequence": {"id": name, "type_id": type_id}}

    ids = doc["special_tokens"]
    return {
        "type": "TemplateProcessing",
        "single": [special(cls, 0), seq("A", 0), special(sep, 0)],
        "pair": [special(cls, 0), seq("A", 0), special(sep, 0), seq("B", 1), special(sep, 1)],
        "special_tokens": {t: {"id": t, "ids": [ids[t]], "tokens": [t]} for t in (cls, sep)},
    }


def _wordpiece_json(doc: dict[str, Any]) -> dict[str, Any]:
    vocab = doc["vocab"]
    if isinstance(vocab, list):
        vocab = {t: i for i, t in enumerate(vocab) if t != ""}  # "" marks an id no token has
    return {
        "normalizer": {
            "type": "BertNormalizer",
            "clean_text": True,
            "handle_chinese_chars": doc["tokenize_chinese_chars"],
            "strip_accents": doc["strip_accents"],
            "lowercase": doc["lowercase"],
        },
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": _bert_framing(doc),
        "decoder": {"type": "WordPiece", "prefix": doc["continuing_prefix"], "cleanup": True},
        "model": {
            "type": "WordPiece",
            "unk_token": doc["unk_token"],
            "continuing_subword_prefix": doc["continuing_prefix"],
            "max_input_chars_per_word": doc["max_input_chars_per_word"],
            "vocab": vocab,
        },
    }


def _char_json(doc: dict[str, Any]) -> dict[str, Any]:
    # the special tokens belong in the model's vocabulary too: ``tokenizers`` gives an added token missing
    # from it the next free id, whatever its "id" says (and BPE looks its unknown token up there)
    vocab = {**{c: i for i, c in enumerate(doc["chars"])}, **doc["special_tokens"]}
    unk = doc["unk_token"] if doc["unknown"] == "replace" else None
    return {
        "normalizer": None,
        "pre_tokenizer": None,
        "post_processor": None,
        "decoder": {"type": "Fuse"},
        "model": _bpe_model(vocab, [], unk),
    }


_WRITERS = {"byte_bpe": _byte_bpe_json, "wordpiece": _wordpiece_json, "char": _char_json}


def tokenizer_json(doc: dict[str, Any]) -> dict[str, Any]:
    """The ``tokenizer.json`` of a tformer tokenizer document."""
    body = _WRITERS[doc["type"]](doc)
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": _added_tokens(doc), **body}


def tokenizer_config(doc: dict[str, Any], model_max_length: int | None = None) -> dict[str, Any]:
    """The ``tokenizer_config.json`` that lets ``transformers.AutoTokenizer`` load ``tokenizer.json`` as is."""
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": False,
        "padding_side": doc["padding_side"],
        "truncation_side": doc["truncation_side"],
        **{f"{role}_token": token for role, token in doc["roles"].items()},
        "added_tokens_decoder": {
            str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in _added_tokens(doc)
        },
    }
    if model_max_length is not None:
        config["model_max_length"] = model_max_length
    if doc["type"] == "wordpiece":  # sentence-pair models take segment ids
        config["model_input_names"] = ["input_ids", "token_type_ids", "attention_mask"]
    if doc["type"] == "wordpiece":  # BertTokenizer's names, which tformer's vocab.txt reader also takes
        config |= {
            "do_lower_case": doc["lowercase"],
            "strip_accents": doc["strip_accents"],
            "tokenize_chinese_chars": doc["tokenize_chinese_chars"],
        }
    return config


def hf_files(doc: dict[str, Any], model_max_length: int | None = None) -> dict[str, str]:
    """File name -> text of ``tokenizer.json`` and ``tokenizer_config.json`` for a tformer document."""
    return {
        HF_FILE: json.dumps(tokenizer_json(doc), ensure_ascii=False, indent=1),
        HF_CONFIG_FILE: json.dumps(tokenizer_config(doc, model_max_length), ensure_ascii=False, indent=2),
    }


def write_hf_files(doc: dict[str, Any], directory: str | Path, model_max_length: int | None = None) -> Path:
    """Write :func:`hf_files` into ``directory`` (created if missing); return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in hf_files(doc, model_max_length).items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


# ---- reading ----------------------------------------------------------------------------------------
def _type(part: dict[str, Any] | None) -> str | None:
    return None if part is None else part.get("type")


def _unsupported(source: str, what: str, model_type: str | None) -> ConfigError:
    model = f" (model type {model_type!r})" if model_type else ""
    return ConfigError(
        f"{source}{model}: {what}, which tformer does not implement; tformer reads byte-level BPE, "
        "WordPiece and character tokenizer.json files"
    )


def _roles(config: dict[str, Any], specials: dict[str, int]) -> dict[str, str]:
    """Roles named by tokenizer_config.json (``"eos_token": "</s>"`` or an AddedToken dict) among the specials."""
    roles = {}
    for role in ROLES:
        value = config.get(f"{role}_token")
        token = value.get("content") if isinstance(value, dict) else value
        if isinstance(token, str) and token in specials:
            roles[role] = token
    return roles


def _header(kind: str, specials: dict[str, int], config: dict[str, Any] | None) -> dict[str, Any]:
    """The header of a tformer document; roles inferred from the names when tokenizer_config.json has none."""
    roles = _roles(config, specials) if config else {}
    return {
        "type": kind,
        "special_tokens": specials,
        "roles": roles or None,
        "padding_side": (config or {}).get("padding_side", "right"),
        "truncation_side": (config or {}).get("truncation_side", "right"),
    }


def _pattern(pre: dict[str, Any] | None) -> str | None:
    """The pre-tokenisation regex of a byte-level pipeline, or None if it is not one tformer runs."""

    def plain(level: dict[str, Any]) -> bool:  # a space added before the text would change every id
        return _type(level) == "ByteLevel" and not level.get("add_prefix_space", False)

    if plain(pre) and pre.get("use_regex", True):
        return GPT2_PATTERN
    parts = (pre or {}).get("pretokenizers") or []
    if (
        _type(pre) == "Sequence"
        and len(parts) == 2
        and plain(parts[1])
        and not parts[1].get("use_regex", True)
    ):
        split = parts[0]
        regex = (split.get("pattern") or {}).get("Regex")
        if (
            _type(split) == "Split"
            and regex
            and split.get("behavior") == "Isolated"
            and not split.get("invert")
        ):
            return regex
    return None


def _byte_bpe_doc(tj: dict[str, Any], specials: dict[str, int], source: str, model_type: str | None) -> dict:
    model, pre = tj["model"], tj.get("pre_tokenizer")
    pattern = _pattern(pre)
    if pattern is None:
        raise _unsupported(
            source, f"a BPE tokenizer with pre-tokenizer {_type(pre)!r} (not byte-level)", model_type
        )
    for key, off in (("dropout", None), ("byte_fallback", False), ("ignore_merges", False)):
        if model.get(key, off) not in (off, ""):
            raise _unsupported(source, f"a BPE tokenizer with {key}={model[key]!r}", model_type)
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise _unsupported(source, f"a BPE tokenizer with {key}={model[key]!r}", model_type)
    if tj.get("normalizer") is not None:
        raise _unsupported(source, f"a BPE tokenizer with normalizer {_type(tj['normalizer'])!r}", model_type)
    post = tj.get("post_processor")
    if post is not None and _type(post) != "ByteLevel":
        raise _unsupported(
            source, f"a BPE tokenizer that adds tokens around the text ({_type(post)})", model_type
        )
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    vocab = {t: i for t, i in model["vocab"].items() if t not in specials}
    return {"pattern": pattern_name(pattern), "vocab": vocab, "merges": merges}


def _framing_tokens(post: dict[str, Any] | None) -> tuple[str, str] | None:
    """(cls, sep) of BERT's framing as BertProcessing or TemplateProcessing, None without post-processor."""
    if post is None:
        return None
    if _type(post) == "BertProcessing":
        return post["cls"][0], post["sep"][0]
    if _type(post) == "TemplateProcessing":
        single = post.get("single") or []
        shape = [next(iter(piece)) for piece in single]
        if shape == ["SpecialToken", "Sequence", "SpecialToken"]:
            return single[0]["SpecialToken"]["id"], single[2]["SpecialToken"]["id"]
    raise ValueError(f"post-processor {_type(post)!r} is not BERT's [CLS] A [SEP] framing")


def _wordpiece_doc(tj: dict[str, Any], specials: dict[str, int], source: str, model_type: str | None) -> dict:
    model, norm = tj["model"], tj.get("normalizer") or {}
    if _type(norm) != "BertNormalizer" or not norm.get("clean_text", True):
        raise _unsupported(source, f"a WordPiece tokenizer with normalizer {_type(norm)!r}", model_type)
    if _type(tj.get("pre_tokenizer")) != "BertPreTokenizer":
        raise _unsupported(
            source, f"a WordPiece tokenizer with pre-tokenizer {_type(tj.get('pre_tokenizer'))!r}", model_type
        )
    try:
        framing = _framing_tokens(tj.get("post_processor"))
    except ValueError as e:
        raise _unsupported(source, f"a WordPiece tokenizer whose {e}", model_type) from None
    return {
        "vocab": model["vocab"],
        "lowercase": norm.get("lowercase", True),
        "strip_accents": norm.get("strip_accents"),
        "tokenize_chinese_chars": norm.get("handle_chinese_chars", True),
        "unk_token": model.get("unk_token", "[UNK]"),
        "continuing_prefix": model.get("continuing_subword_prefix", "##"),
        "max_input_chars_per_word": model.get("max_input_chars_per_word", 100),
        "framing": framing,
    }


def _is_char_model(tj: dict[str, Any]) -> bool:
    model = tj["model"]
    return (
        _type(model) == "BPE"
        and not model.get("merges")
        and _type(tj.get("decoder")) == "Fuse"
        and tj.get("pre_tokenizer") is None
        and tj.get("normalizer") is None
    )


def _char_doc(tj: dict[str, Any], specials: dict[str, int], source: str) -> dict[str, Any]:
    chars = sorted((i, t) for t, i in tj["model"]["vocab"].items() if t not in specials)
    if [i for i, _ in chars] != list(range(len(chars))) or any(len(t) != 1 for _, t in chars):
        raise ConfigError(f"{source}: a character tokenizer's characters must have ids 0..n-1")
    order = sorted(specials, key=specials.get)
    if [specials[t] for t in order] != list(range(len(chars), len(chars) + len(order))):
        raise ConfigError(f"{source}: a character tokenizer's special tokens must follow the characters")
    unk = tj["model"].get("unk_token")
    return {
        "chars": [t for _, t in chars],
        "unknown": "replace" if unk else "skip",
        "unk_token": unk or "<unk>",
    }


def document_from_hf(
    tj: dict[str, Any], config: dict[str, Any] | None, source: str, model_type: str | None = None
) -> dict[str, Any]:
    """The tformer tokenizer document of a parsed ``tokenizer.json`` (and ``tokenizer_config.json``).

    ``roles`` is None where tokenizer_config.json names none (infer them from the token names); a WordPiece
    document also has ``framing``: the (cls, sep) tokens its post-processor frames texts with, or None.

    Raises:
        ConfigError: a kind of tokenizer tformer does not implement (the message names it and the model type).
    """
    model = tj.get("model") or {}
    specials = {a["content"]: a["id"] for a in tj.get("added_tokens") or []}
    if _type(model) == "BPE" and _is_char_model(tj):
        return {**_header("char", specials, config), **_char_doc(tj, specials, source)}
    if _type(model) == "BPE":
        return {**_header("byte_bpe", specials, config), **_byte_bpe_doc(tj, specials, source, model_type)}
    if _type(model) == "WordPiece":
        return {**_header("wordpiece", specials, config), **_wordpiece_doc(tj, specials, source, model_type)}
    raise _unsupported(source, f"a {_type(model) or 'model-less'} tokenizer", model_type)
