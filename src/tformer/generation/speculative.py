"""Speculative decoding (``assistant_model=``) and prompt lookup decoding (``prompt_lookup_num_tokens=``).

A forward pass over K + 1 tokens costs about as much as one over a single token when decoding is bound by
reading the weights, so each round drafts K tokens cheaply (a small model sharing the vocabulary, or a copy
of what followed the text's last n-gram earlier on), scores them all in one pass of the target model and
keeps the longest acceptable prefix plus one token from the target. The output is exactly plain decoding's:
token for token when greedy, in distribution when sampling (``acceptance``).

Batches: rows accept different numbers of tokens per round. They stay right-aligned in the cache columns
(``row_layout``): after a round, rows that accepted fewer tokens than the longest one are moved right in both
models' caches, and columns past the kept tokens are dropped (``rewind_caches``), so no prefix is ever
recomputed. Sliding-window models get ring buffers with ``window_slack`` extra slots: a round writes at most
K + 1 tokens past what it keeps, so the keys a later query can still see are never overwritten.

Names and meanings follow Hugging Face (which runs this for batch 1 only): ``num_assistant_tokens`` (20),
``num_assistant_tokens_schedule`` ("constant"; "heuristic": + 2 after a round where a row accepted every
drafted token, else - 1; here it restarts from ``num_assistant_tokens`` on every call, as HF's
"heuristic_transient"), ``prompt_lookup_num_tokens``, ``max_matching_ngram_size`` (2).
Shapes: B rows, T prompt width, K drafted tokens, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import torch

from tformer.generation.acceptance import verify_greedy, verify_sampled
from tformer.generation.config import GenerationConfig, GenerationError
from tformer.generation.drafters import Draft, Drafter, LookupDrafter, ModelDrafter, model_logits
from tformer.generation.protocols import CausalLM, SpeculativeLM
from tformer.generation.speculative_rows import Rows
from tformer.generation.stopping import StopStrings

SCHEDULES = ("constant", "heuristic", "heuristic_transient")


@dataclass
class SpeculativeConfig:
    """The speculative options of ``generate``, validated (Hugging Face's names and defaults)."""

    assistant_model: Any = None  # a SpeculativeLM sharing the model's vocabulary
    num_assistant_tokens: int = 20
    num_assistant_tokens_schedule: str = "constant"
    prompt_lookup_num_tokens: int | None = None
    max_matching_ngram_size: int | None = None  # None: 2

    @classmethod
    def pop_from(cls, options: dict[str, Any]) -> SpeculativeConfig | None:
        """Remove the speculative options from ``generate``'s keyword arguments; None when none is set."""
        picked = {f.name: options.pop(f.name) for f in fields(cls) if f.name in options}
        picked = {name: value for name, value in picked.items() if value is not None}
        return cls(**picked) if picked else None

    def __post_init__(self) -> None:
        if self.assistant_model is not None and self.prompt_lookup_num_tokens is not None:
            raise GenerationError("pass either assistant_model or prompt_lookup_num_tokens, not both")
        if self.assistant_model is None and self.prompt_lookup_num_tokens is None:
            raise GenerationError(
                "speculative options need assistant_model=<draft model> or prompt_lookup_num_tokens=N"
            )
        positive = ("num_assistant_tokens", "prompt_lookup_num_tokens", "max_matching_ngram_size")
        for name in positive:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise GenerationError(f"{name} must be an integer >= 1, got {value!r}")
        if self.num_assistant_tokens_schedule not in SCHEDULES:
            raise GenerationError(
                f"num_assistant_tokens_schedule must be one of {', '.join(SCHEDULES)}, "
                f"got {self.num_assistant_tokens_schedule!r}"
            )

    @property
    def draft_tokens(self) -> int:
        """Tokens drafted per round at the start."""
        if self.prompt_lookup_num_tokens is not None:
            return self.prompt_lookup_num_tokens
        return self.num_assistant_tokens

    @property
    def adaptive(self) -> bool:
        """Whether the number of drafted tokens follows the heuristic schedule."""
        return self.assistant_model is not None and self.num_assistant_tokens_schedule != "constant"


def check_speculative(
    model: CausalLM, config: GenerationConfig, spec: SpeculativeConfig, prompt_width: int, stop: bool
) -> None:
    """One-line errors for what speculative decoding does not support."""
    what = "speculative decoding (assistant_model / prompt_lookup_num_tokens)"
    if model.config.arch != "decoder":
        raise GenerationError(
            f"{what} is not supported for {model.config.arch} models; use a decoder-only model"
        )
    if config.num_beams > 1:
        raise GenerationError(f"{what} is not supported with beam search; use num_beams=1")
    if not config.use_cache:
        raise GenerationError(f"{what} needs the key/value caches; drop use_cache=False")
    if config.output_logits:
        raise GenerationError(f"output_logits is not supported with {what}")
    if stop and config.pad_token_id is None:
        raise GenerationError(
            f"stop_strings with {what} need a pad_token_id (finished rows are padded with it)"
        )
    if not isinstance(model, SpeculativeLM):
        raise GenerationError(f"{what} needs a model whose caches can be rewound (rewind_caches)")
    draft = spec.assistant_model
    if draft is None:
        return
    if draft is model:
        raise GenerationError(
            "assistant_model must be another model than the one generating (each has caches)"
        )
    if not isinstance(draft, SpeculativeLM) or draft.config.arch != "decoder":
        raise GenerationError("assistant_model must be a decoder-only language model with rewindable caches")
    if draft.config.vocab_size != model.config.vocab_size:
        raise GenerationError(
            f"assistant_model has vocab_size {draft.config.vocab_size} but the model has "
            f"{model.config.vocab_size}; the draft model must share the model's tokenizer"
        )
    if draft.device != model.device:
        raise GenerationError(f"assistant_model is on {draft.device} but the model is on {model.device}")
    need = prompt_width + config.max_new_tokens
    if draft.config.max_seq_len < need:
        raise GenerationError(
            f"assistant_model's context of {draft.config.max_seq_len} tokens is shorter than this request "
            f"(prompt {prompt_width} + max_new_tokens {config.max_new_tokens} = {need}); lower "
            "max_new_tokens or use a draft model with a longer context"
        )


def check_left_padded(prompt_mask: torch.Tensor) -> None:
    """Every row: padding (0) first, then at least one token (1)."""
    if not bool((prompt_mask[:, 1:] >= prompt_mask[:, :-1]).all()) or not bool(prompt_mask[:, -1].all()):
        raise GenerationError(
            "speculative decoding needs left padding (attention_mask 0s before 1s) and a token in every row"
        )


class SpeculativeDecoder:
    """Draft, verify, accept, realign: rounds until every row is finished.

    Args:
        model: the target. input_ids: (B, T) left-padded prompts. prompt_mask: (B, T).
        config: generation settings. spec: the speculative options. stop: stop strings or None.
        generator: random generator for sampling (None: torch's global one).
    """

    def __init__(
        self,
        model: CausalLM,
        input_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        config: GenerationConfig,
        spec: SpeculativeConfig,
        stop: StopStrings | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        check_speculative(model, config, spec, input_ids.shape[1], stop is not None)
        check_left_padded(prompt_mask)
        assert isinstance(model, SpeculativeLM)  # checked above, for the type checker
        self.model, self.config, self.spec, self.generator = model, config, spec, generator
        self.rows = Rows(input_ids, prompt_mask, config, stop)
        budget = max(1, config.max_new_tokens - 1)  # a round adds at most drafted + 1 tokens
        self.max_k = budget if spec.adaptive else min(spec.draft_tokens, budget)
        self.k = min(spec.draft_tokens, self.max_k)
        self.draft_model: SpeculativeLM | None = spec.assistant_model
        self.drafter: Drafter = (
            ModelDrafter(self.draft_model, config.do_sample)
            if self.draft_model is not None
            else LookupDrafter(spec.max_matching_ngram_size or 2, self.rows.eos)
        )
        B = input_ids.shape[0]
        self.num_drafted = torch.zeros(B, dtype=torch.long, device=input_ids.device)
        self.num_accepted = torch.zeros_like(self.num_drafted)

    @property
    def models(self) -> list[SpeculativeLM]:
        """The target, then the draft model if there is one."""
        return [self.model] + ([self.draft_model] if self.draft_model is not None else [])

    def start(self) -> None:
        """Set up both models' caches and run the target over the prompts (all but each row's last token,
        which every round feeds first)."""
        rows = self.rows
        B, C = rows.history.shape
        for m in self.models:
            # a round writes up to max_k + 1 tokens past what it keeps (see RollingKVCache.rewind)
            m.setup_caches(B, C, window_slack=self.max_k + 2)
            m.rewind_caches(0)  # refuses caches that cannot drop tokens, before any work
        if rows.prompt_width > 1:
            model_logits(self.model, rows, rows.layout_tokens(0, rows.prompt_width - 1), 0, 1)

    def close(self) -> None:
        """Free both models' caches."""
        for m in self.models:
            m.clear_caches()

    def steps(self) -> Iterator[torch.Tensor]:
        """Yield each new column of tokens (B,) once every row has it; the caches live only meanwhile."""
        rows, T = self.rows, self.rows.prompt_width
        try:
            self.start()
            emitted = 0
            while bool(rows.active.any()):
                self.round()
                ready = rows.ready()
                for c in range(emitted, ready):
                    yield rows.history[:, T + c]
                emitted = max(emitted, ready)
        finally:
            self.close()

    def round(self) -> None:
        """One round: draft up to k tokens, score them in one target pass, keep the accepted ones."""
        rows, layout = self.rows, self.rows.layout
        E, B = layout.end, rows.history.shape[0]
        k = min(self.k, layout.columns - E, int(rows.remaining[rows.active].max()) - 1)
        draft = (
            self.drafter.propose(rows, k, self.generator) if k > 0 else Draft.empty(B, rows.history.device)
        )
        K = draft.tokens.shape[1]
        chunk = torch.cat([rows.layout_tokens(E - 1, E), draft.tokens], dim=1)  # (B, K + 1)
        scores = rows.process(model_logits(self.model, rows, chunk, E - 1, K + 1), draft.tokens, first=0)
        if self.config.do_sample:
            tokens, accepted = verify_sampled(
                scores, draft.tokens, draft.lengths, draft.probs, self.generator
            )
        else:
            tokens, accepted = verify_greedy(scores, draft.tokens, draft.lengths)
        was_active = rows.active.clone()
        gained = rows.append(tokens, accepted + 1)
        self.num_drafted += torch.where(was_active, draft.lengths, 0)
        self.num_accepted += torch.where(was_active, torch.minimum(accepted, gained), 0)
        shift: torch.Tensor | None = layout.advance(gained, rows.active)
        if not bool(shift.any()):
            shift = None  # every active row moved as far as the longest: nothing to move in the caches
        if bool(rows.active.any()):
            self.model.rewind_caches(layout.end - 1, shift)  # all but each row's newest token
            self.drafter.advance(E, accepted, shift, rows.active)
        if self.spec.adaptive and K > 0:
            everything = bool((accepted[was_active] == K).any())
            self.k = min(self.k + 2, self.max_k) if everything else max(1, self.k - 1)

    @property
    def acceptance_rate(self) -> float:
        """Accepted / drafted tokens over all rows so far (0.0 before any draft)."""
        drafted = int(self.num_drafted.sum())
        return int(self.num_accepted.sum()) / drafted if drafted else 0.0
