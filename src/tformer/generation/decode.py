"""Greedy and sampled decoding: the token loop, one step at a time, as a generator of new tokens.

Per step (Hugging Face's ``_sample``): processed scores -> next token (argmax or multinomial) -> rows
already finished get ``pad_token_id`` -> EOS / stop-string checks -> forward the new token. Shapes:
B rows, L = prompt + max_new_tokens columns of the preallocated ``tokens`` buffer, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from tformer.generation.config import GenerationConfig
from tformer.generation.logits_processing import process_scores
from tformer.generation.runners import Runner
from tformer.generation.sampling import select_next
from tformer.generation.stopping import StopStrings, eos_hit


@dataclass
class DecodeContext:
    """What the loops need besides the model runner.

    tokens: (B, L) buffer; the prompt fills the first ``prompt_len`` columns, new tokens are written after.
    ignore_before: (B,) leading positions the repetition penalty skips (left padding), or None.
    """

    tokens: torch.Tensor
    prompt_len: int
    config: GenerationConfig
    use_cache: bool
    ignore_before: torch.Tensor | None = None
    stop: StopStrings | None = None
    generator: torch.Generator | None = None
    logits: list[torch.Tensor] = field(default_factory=list)  # raw logits per step, when asked
    scores: list[torch.Tensor] = field(default_factory=list)  # processed scores per step, when asked

    def record(self, logits: torch.Tensor) -> None:
        """Keep a copy of this step's raw logits (B, V) when ``output_logits`` asks for them."""
        if self.config.output_logits:
            self.logits.append(logits.float().clone())

    def record_scores(self, scores: torch.Tensor) -> None:
        """Keep a copy of this step's processed scores (B, V) when ``output_scores`` asks for them."""
        if self.config.output_scores:
            self.scores.append(scores.clone())

    def recorded(self) -> dict[str, tuple[torch.Tensor, ...] | None]:
        """What was recorded, as ``GenerateOutput`` fields (None where nothing was asked for)."""
        return {"logits": tuple(self.logits) or None, "scores": tuple(self.scores) or None}

    @property
    def eos(self) -> torch.Tensor | None:
        """The EOS ids as a tensor on the tokens' device, or None without any."""
        ids = self.config.eos_ids
        return torch.tensor(ids, device=self.tokens.device) if ids else None


def first_logits(runner: Runner, ctx: DecodeContext, tokens: torch.Tensor) -> torch.Tensor:
    """Logits after the prompt: a cached prefill, or an uncached full pass."""
    return runner.prefill(tokens) if ctx.use_cache else runner.full(tokens)


def next_logits(runner: Runner, ctx: DecodeContext, tokens: torch.Tensor, cur: int) -> torch.Tensor:
    """Logits after tokens[:, :cur]: forward only the newest token with a cache, everything without."""
    return runner.step(tokens[:, cur - 1 : cur], cur - 1) if ctx.use_cache else runner.full(tokens[:, :cur])


def decode_tokens(runner: Runner, ctx: DecodeContext) -> Iterator[torch.Tensor]:
    """Yield each step's new tokens (B,) until every row finished or the buffer is full.

    On return, ``ctx.tokens[:, :prompt_len + steps]`` holds prompt and generated tokens.
    """
    tokens, cfg = ctx.tokens, ctx.config
    B, L = tokens.shape
    eos, pad = ctx.eos, cfg.pad_token_id
    can_finish = eos is not None or ctx.stop is not None
    unfinished = torch.ones(B, dtype=torch.bool, device=tokens.device)
    cur = ctx.prompt_len
    logits = first_logits(runner, ctx, tokens[:, :cur])
    while True:
        ctx.record(logits)
        scores = process_scores(logits.float(), tokens[:, :cur], cfg, ctx.ignore_before)
        ctx.record_scores(scores)
        nxt = select_next(scores, cfg.do_sample, ctx.generator)  # (B,)
        if can_finish and pad is not None:
            nxt = torch.where(unfinished, nxt, pad)
        tokens[:, cur] = nxt
        cur += 1
        if can_finish:
            done = eos_hit(nxt, eos)
            if ctx.stop is not None:
                done |= ctx.stop(tokens[:, :cur], unfinished & ~done)
            unfinished &= ~done
        yield nxt
        if cur == L or (can_finish and not bool(unfinished.any())):
            return
        logits = next_logits(runner, ctx, tokens, cur)
