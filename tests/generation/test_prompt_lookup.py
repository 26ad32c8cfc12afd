"""Prompt lookup drafts: Hugging Face's PromptLookupCandidateGenerator for every sequence, n-gram size and
draft length; rows of a left-padded batch draft what each row alone would."""

from __future__ import annotations

import pytest
import torch

from tformer.generation.prompt_lookup import lookup_drafts

EOS = 0


def sequences(count: int = 60, seed: int = 0) -> list[torch.Tensor]:
    """Short sequences over 5 tokens (so n-grams repeat), some containing the EOS id."""
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randint(0, 5, (int(torch.randint(1, 14, (1,), generator=g)),), generator=g)
        for _ in range(count)
    ]


def ours(seq: torch.Tensor, n_tokens: int, ngram: int) -> list[int]:
    drafts, lengths = lookup_drafts(
        seq[None], torch.zeros(1, dtype=torch.long), n_tokens, ngram, torch.tensor([EOS])
    )
    return drafts[0, : int(lengths[0])].tolist()


def test_lookup_example_from_the_docstring():
    drafts, lengths = lookup_drafts(torch.tensor([[5, 6, 7, 8, 5, 6]]), torch.tensor([0]), 3, 2)
    assert drafts[0, : int(lengths[0])].tolist() == [7, 8, 5]


@pytest.mark.parametrize("ngram", [1, 2, 3])
@pytest.mark.parametrize("n_tokens", [1, 3, 5])
def test_lookup_equals_hugging_face(ngram, n_tokens):
    candidates = pytest.importorskip("transformers.generation.candidate_generator")
    hf = candidates.PromptLookupCandidateGenerator(
        eos_token_id=torch.tensor([EOS]),
        num_output_tokens=n_tokens,
        max_matching_ngram_size=ngram,
        max_length=1000,
    )
    drafted = 0
    for seq in sequences():
        out, _ = hf.get_candidates(seq[None])
        expected = out[0, len(seq) :].tolist()
        assert ours(seq, n_tokens, ngram) == expected, seq.tolist()
        drafted += len(expected)
    assert drafted > 0


def test_rows_of_a_left_padded_batch_draft_as_alone():
    seqs = sequences(12, seed=1)
    E = max(len(s) for s in seqs)
    tokens = torch.full((len(seqs), E), 3)  # padding that would match if it were not skipped
    start = torch.tensor([E - len(s) for s in seqs])
    for i, s in enumerate(seqs):
        tokens[i, E - len(s) :] = s
    drafts, lengths = lookup_drafts(tokens, start, 4, 2, torch.tensor([EOS]))
    for i, s in enumerate(seqs):
        assert drafts[i, : int(lengths[i])].tolist() == ours(s, 4, 2)
