"""Evaluation of a trained model on files: every example counted once, the run's settings by default."""

import math

import pytest
import torch

from tformer.errors import ConfigError
from tformer.training.evaluate import evaluate_model, evaluation_task
from tformer.training.losses import nll_sum
from tformer.training.tasks import Seq2SeqTask, SyntheticTask, collate_pairs, synthetic_tokenizer
from tformer.training.tokenization import train_tokenizer

from .helpers import tiny_seq2seq, write_pairs


def _seq2seq_model(tmp_path):
    data = write_pairs(tmp_path / "pairs.tsv", n=20)
    texts, _ = Seq2SeqTask.read_inputs([data])
    tok = train_tokenizer("char", "seq2seq", texts, vocab_size=512)
    torch.manual_seed(0)
    model = tiny_seq2seq(tok).eval()
    return model, tok, data


def test_seq2seq_evaluation_covers_every_pair_once(tmp_path):
    model, tok, data = _seq2seq_model(tmp_path)  # no run.json: the task comes from the architecture
    metrics = evaluate_model(model, tok, tmp_path, [str(data)], batch_size=8)  # 3 batches: 8 + 8 + 4
    task = evaluation_task("seq2seq", tok, model.config, [data], 8, model.config.max_seq_len, None)
    whole = collate_pairs(task.val, task.start_id, task.eos_id, task.pad_id)  # all 20 pairs in one batch
    with torch.no_grad():
        logits = model(
            whole["input_ids"],
            whole["attention_mask"],
            decoder_input_ids=whole["decoder_input_ids"],
            decoder_attention_mask=whole["decoder_attention_mask"],
        ).logits
    loss, count = nll_sum(logits, whole["labels"])
    assert metrics["loss"] == pytest.approx(loss / count, rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(loss / count), rel=1e-5)


def test_synthetic_evaluation_draws_examples_that_fill_the_block(tmp_path):
    tok = synthetic_tokenizer(7)
    model = tiny_seq2seq(tok)
    task = evaluation_task("reverse", tok, model.config, [], 4, 9, None)
    assert isinstance(task, SyntheticTask) and (task.name, task.n_symbols, task.length) == ("reverse", 7, 8)
    assert len(task.eval_batches()) == SyntheticTask.default_eval_batches
    metrics = evaluate_model(model, tok, tmp_path, [], task="reverse", block_size=9, max_batches=1)
    assert set(metrics) == {"loss", "perplexity", "exact_match"} and 0.0 <= metrics["exact_match"] <= 1.0


def test_a_block_longer_than_the_context_is_refused(tmp_path):
    model, tok, data = _seq2seq_model(tmp_path)
    with pytest.raises(ConfigError, match="block_size=1000 exceeds the model's context"):
        evaluate_model(model, tok, tmp_path, [str(data)], block_size=1000)
