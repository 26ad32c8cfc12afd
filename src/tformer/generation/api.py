"""``generate``: prepare inputs and caches, pick the decoding strategy, return Hugging Face's convention.

Decoder-only models return prompt + new tokens (B, T + n); encoder-decoder models return decoder ids
starting with the decoder start token (B, 1 + n). Rows that finished early are padded with
``pad_token_id``. Shapes: B batch, T prompt length, S source length, L = T + max_new_tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeGuard, cast

import torch

from tformer.generation.beam_search import beam_search
from tformer.generation.config import GenerationConfig, GenerationError
from tformer.generation.decode import DecodeContext, decode_tokens
from tformer.generation.protocols import CachedModel, CausalLM, GenerativeLM, Seq2SeqLM
from tformer.generation.runners import DecoderRunner, Runner, Seq2SeqRunner
from tformer.generation.sampling import make_generator
from tformer.generation.speculative import SpeculativeConfig, SpeculativeDecoder
from tformer.generation.stopping import StopStrings
from tformer.tokenizers.stream import SupportsDecode


@dataclass
class GenerateOutput:
    """``generate(..., return_dict=True)`` (or ``return_dict_in_generate=True``), in Hugging Face's names.

    sequences: the ids. sequences_scores: beam search's final score of each. scores (``output_scores``):
    the processed next-token scores of every step, each (B, V) (beam search: processed log-probabilities
    of every beam row). logits (``output_logits``): the raw next-token logits of every step. beam_indices:
    beam search's row each token came from. num_drafted / num_accepted: speculative decoding's drafted
    and accepted token counts of each row (B,).
    """

    sequences: torch.Tensor
    sequences_scores: torch.Tensor | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    scores: tuple[torch.Tensor, ...] | None = None
    beam_indices: torch.Tensor | None = None
    num_drafted: torch.Tensor | None = None
    num_accepted: torch.Tensor | None = None

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted / drafted tokens over all rows (speculative decoding), else None."""
        if self.num_drafted is None or self.num_accepted is None:
            return None
        drafted = int(self.num_drafted.sum())
        return int(self.num_accepted.sum()) / drafted if drafted else 0.0


def is_encoder_decoder(model: GenerativeLM) -> TypeGuard[Seq2SeqLM]:
    """Whether the model encodes a source and decodes against it (its config's ``arch``)."""
    return model.config.arch == "encoder_decoder"


def check_input_ids(input_ids: Any) -> torch.Tensor:
    """``input_ids`` as a (B, T) long tensor, or a GenerationError saying what is wrong with it."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise GenerationError(f"input_ids must be a (batch, length) tensor of token ids, got {shape}")
    if input_ids.dtype.is_floating_point:
        raise GenerationError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
    return input_ids.long()


def default_attention_mask(input_ids: torch.Tensor, cfg: GenerationConfig) -> torch.Tensor:
    """Hugging Face's inference: padding = pad tokens, unless pad is also an EOS id (then no padding)."""
    pad = cfg.pad_token_id
    if pad is not None and bool((input_ids == pad).any()) and pad not in cfg.eos_ids:
        return (input_ids != pad).long()
    return torch.ones_like(input_ids)


def check_context(model: CachedModel, prompt_len: int, new_tokens: int, what: str) -> None:
    """Positions the model cannot represent are a clear error, not silent garbage."""
    cfg = model.config
    limit = cfg.max_seq_len
    if prompt_len > limit:
        raise GenerationError(
            f"the {what} has {prompt_len} tokens, longer than the model's context of {limit}; "
            "shorten or truncate it"
        )
    if cfg.position in ("learned", "sinusoidal") and prompt_len + new_tokens > limit:
        raise GenerationError(
            f"the {what} ({prompt_len} tokens) + max_new_tokens={new_tokens} exceeds the model's context of "
            f"{limit} tokens; lower max_new_tokens or shorten the {what}"
        )


Prepared = tuple[torch.Tensor, int, Runner, torch.Tensor | None]  # tokens (B, L), T, runner, ignore_before


def decoder_prompt(
    model: CausalLM, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, cfg: GenerationConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts and mask (B * expand, T): BOS for an empty prompt, the mask inferred from padding when not
    given, each row repeated for its beams or samples."""
    if input_ids.shape[1] == 0:
        bos = model.config.bos_token_id
        if bos is None:
            raise GenerationError(
                "empty prompt and the model has no bos_token_id to start from; give at least one token"
            )
        input_ids = torch.full((input_ids.shape[0], 1), bos, dtype=torch.long, device=input_ids.device)
        attention_mask = None
    if attention_mask is None:
        attention_mask = default_attention_mask(input_ids, cfg)
    check_context(model, input_ids.shape[1], cfg.max_new_tokens, "prompt")
    expand = max(cfg.num_beams, cfg.num_return_sequences if cfg.do_sample else 1)
    return input_ids.repeat_interleave(expand, 0), attention_mask.repeat_interleave(expand, 0)


def prepare_decoder_only(
    model: CausalLM, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, cfg: GenerationConfig
) -> Prepared:
    """Tokens buffer (B, L), prompt length, runner and repetition-penalty offsets for a decoder-only model."""
    input_ids, attention_mask = decoder_prompt(model, input_ids, attention_mask, cfg)
    T = input_ids.shape[1]
    L = T + cfg.max_new_tokens
    tokens = torch.empty(input_ids.shape[0], L, dtype=torch.long, device=input_ids.device)
    tokens[:, :T] = input_ids
    ignore_before = (attention_mask != 0).int().argmax(dim=1)  # left padding the repetition penalty skips
    return tokens, T, DecoderRunner(model, attention_mask, L), ignore_before


def prepare_encoder_decoder(
    model: Seq2SeqLM, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, cfg: GenerationConfig
) -> Prepared:
    """Encode the source once; decoder tokens start with the decoder start token."""
    if input_ids.shape[1] == 0:
        raise GenerationError("empty source: an encoder-decoder model needs at least one input token")
    if attention_mask is None:
        attention_mask = default_attention_mask(input_ids, cfg)
    check_context(model, input_ids.shape[1], 0, "input")
    check_context(model, 1, cfg.max_new_tokens, "decoder output")
    memory = model.encode(input_ids, attention_mask)  # (B, S, d_model)
    expand = max(cfg.num_beams, cfg.num_return_sequences if cfg.do_sample else 1)
    memory, attention_mask = memory.repeat_interleave(expand, 0), attention_mask.repeat_interleave(expand, 0)
    L = 1 + cfg.max_new_tokens
    tokens = torch.empty(memory.shape[0], L, dtype=torch.long, device=input_ids.device)
    tokens[:, 0] = cfg.decoder_start_token_id
    return tokens, 1, Seq2SeqRunner(model, memory, attention_mask, L), None


class TokenStream:
    """Iterator over each step's new tokens (B,); ``output`` holds the ``GenerateOutput`` once exhausted.

    Each step runs under ``torch.inference_mode`` without leaking it into the consumer's code between
    steps. Stopping early (``close()`` or dropping the iterator) frees the caches.
    """

    def __init__(
        self, steps: Generator[torch.Tensor, None, GenerateOutput], config: GenerationConfig
    ) -> None:
        self._steps = steps
        self.config = config  # the settings in force: the caller's options over the model's defaults
        self.output: GenerateOutput | None = None

    def __iter__(self) -> TokenStream:
        return self

    def __next__(self) -> torch.Tensor:
        with torch.inference_mode():
            try:
                return next(self._steps)
            except StopIteration as stop:
                self.output = stop.value
                raise

    def close(self) -> None:
        """Stop generating now (the caches are freed)."""
        self._steps.close()


def stream_generate(
    model: GenerativeLM,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    tokenizer: SupportsDecode | None = None,
    **options: Any,
) -> TokenStream:
    """Like ``generate`` but an iterator yielding each step's new tokens (B,) as soon as they exist.

    Beam search yields only once it has finished (the best beams are known at the end), column by column.
    Inputs are checked (and an encoder-decoder's source encoded) here, before the first ``next``. A model
    runs one generation at a time: its caches belong to the stream until it ends or is closed.
    """
    spec = SpeculativeConfig.pop_from(options)
    # a model's generation_config.json holds defaults for the caller's options, as in Hugging Face
    cfg = GenerationConfig.from_kwargs(options, getattr(model, "generation_config", None))
    if model.config.arch == "encoder":
        raise GenerationError("an encoder-only model cannot generate; use a decoder or encoder-decoder model")
    cfg.resolve_special_tokens(model.config, is_encoder_decoder(model))
    input_ids = check_input_ids(input_ids).to(model.device)
    # the decoder's input: the prompt (BOS for an empty one), or an encoder-decoder's start token
    cfg.resolve_lengths(1 if is_encoder_decoder(model) else max(input_ids.shape[1], 1))
    if attention_mask is not None:
        attention_mask = attention_mask.to(model.device)
    stop = StopStrings(cfg.stop_string_list, tokenizer) if cfg.stop_string_list else None
    if spec is not None:
        return _speculative_stream(model, input_ids, attention_mask, cfg, spec, stop)
    with torch.inference_mode():
        if is_encoder_decoder(model):
            tokens, T, runner, ignore_before = prepare_encoder_decoder(model, input_ids, attention_mask, cfg)
        else:  # arch "decoder": an encoder was refused above
            decoder = cast(CausalLM, model)
            tokens, T, runner, ignore_before = prepare_decoder_only(decoder, input_ids, attention_mask, cfg)
    generator = make_generator(cfg.seed, tokens.device)
    ctx = DecodeContext(tokens, T, cfg, cfg.use_cache, ignore_before, stop, generator)
    return TokenStream(_steps(model, runner, ctx), cfg)


def _speculative_stream(
    model: GenerativeLM,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    cfg: GenerationConfig,
    spec: SpeculativeConfig,
    stop: StopStrings | None,
) -> TokenStream:
    """``stream_generate`` with a draft model or prompt lookup (``tformer.generation.speculative``)."""
    _refuse_position_rules(cfg)
    decoder_only = cast(CausalLM, model)  # SpeculativeDecoder refuses encoder-decoders
    with torch.inference_mode():
        input_ids, attention_mask = decoder_prompt(decoder_only, input_ids, attention_mask, cfg)
    generator = make_generator(cfg.seed, input_ids.device)
    decoder = SpeculativeDecoder(decoder_only, input_ids, attention_mask, cfg, spec, stop, generator)

    def steps() -> Generator[torch.Tensor, None, GenerateOutput]:
        yield from decoder.steps()
        return GenerateOutput(
            decoder.rows.sequences(), num_drafted=decoder.num_drafted, num_accepted=decoder.num_accepted
        )

    return TokenStream(steps(), cfg)


# processors that read the length or the n-grams of the text so far: the drafted positions of one round
# would each need their own prefix, which the verification pass does not build
_POSITION_RULES = (
    "min_new_tokens",
    "min_length",
    "no_repeat_ngram_size",
    "bad_words_ids",
    "begin_suppress_tokens",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "output_scores",
)


def _refuse_position_rules(cfg: GenerationConfig) -> None:
    """A one-line error for an option that speculative decoding does not apply exactly."""
    for name in _POSITION_RULES:
        if getattr(cfg, name) not in (None, False, 0, []):
            raise GenerationError(
                f"{name} is not supported with speculative decoding (assistant_model / prompt_lookup_num_tokens);"
                " drop one of them"
            )


def _steps(
    model: CachedModel, runner: Runner, ctx: DecodeContext
) -> Generator[torch.Tensor, None, GenerateOutput]:
    """The generation itself, as a generator whose return value is the ``GenerateOutput``."""
    cfg, tokens, T = ctx.config, ctx.tokens, ctx.prompt_len
    if cfg.use_cache:
        model.setup_caches(tokens.shape[0], tokens.shape[1])
    try:
        if cfg.num_beams > 1:
            batch_size = tokens.shape[0] // cfg.num_beams
            sequences, scores, beam_indices = beam_search(runner, model, ctx, batch_size)
            yield from sequences[:, T:].unbind(1)
            return GenerateOutput(sequences, scores, beam_indices=beam_indices, **ctx.recorded())
        steps = 0
        for new in decode_tokens(runner, ctx):
            steps += 1
            yield new
        return GenerateOutput(tokens[:, : T + steps], **ctx.recorded())
    finally:
        if cfg.use_cache:
            model.clear_caches()


def generate(
    model: GenerativeLM,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    tokenizer: SupportsDecode | None = None,
    streamer: Callable[[torch.Tensor], None] | None = None,
    return_dict: bool = False,
    return_dict_in_generate: bool = False,
    **options: Any,
) -> torch.Tensor | GenerateOutput:
    """Generate continuations of ``input_ids`` (B, T), with Hugging Face's options and meanings.

    Args:
        model: a decoder-only (``CausalLM``) or encoder-decoder (``Seq2SeqLM``) model, e.g. tformer's.
        input_ids: (B, T) prompts (decoder-only; left-pad a batch) or sources (encoder-decoder).
        attention_mask: (B, T) 1 for tokens, 0 for padding; inferred from ``pad_token_id`` when None.
        tokenizer: needed for ``stop_strings``.
        streamer: called with each step's new tokens (B,) as they are produced (beam search: at the end).
        return_dict: return a ``GenerateOutput`` (with ``sequences_scores`` for beam search, and the drafted
            and accepted counts for speculative decoding); ``return_dict_in_generate`` is Hugging Face's name.
        **options: ``GenerationConfig`` fields, over the model's ``generation_config`` defaults (read from a
            directory's generation_config.json): max_new_tokens (default 20) or max_length (prompt included),
            min_new_tokens or min_length (EOS held back until then), do_sample=False, temperature=1.0,
            top_k=None (no top-k), top_p=None, min_p=None, typical_p=None, num_beams=1, length_penalty=1.0,
            early_stopping=False (True / False / "never"), num_return_sequences=1, repetition_penalty=1.0,
            no_repeat_ngram_size, bad_words_ids, suppress_tokens, begin_suppress_tokens,
            forced_bos_token_id, forced_eos_token_id, eos_token_id, pad_token_id, decoder_start_token_id
            (default from the model config), stop_strings, seed (a private RNG; None uses torch's global
            one), use_cache=True, output_scores=False, output_logits=False;
            speculative decoding (decoder-only): assistant_model (a draft model sharing the vocabulary),
            num_assistant_tokens=20, num_assistant_tokens_schedule="constant" | "heuristic", or
            prompt_lookup_num_tokens=N with max_matching_ngram_size=2.

    Returns:
        (B * num_return_sequences, length) token ids, or a ``GenerateOutput`` when ``return_dict``.

    Raises:
        GenerationError: invalid settings, an empty prompt without BOS, a prompt past the context.
    """
    stream = stream_generate(model, input_ids, attention_mask, tokenizer=tokenizer, **options)
    for new in stream:
        if streamer is not None:
            streamer(new)
    output = stream.output
    assert output is not None  # set once the stream is exhausted
    return (
        output
        if return_dict or return_dict_in_generate or stream.config.return_dict_in_generate
        else output.sequences
    )
