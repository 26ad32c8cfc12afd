import json
import os

import numpy as np
import pytest
import torch

from tformer.errors import DataError
from tformer.tokenizers import CharTokenizer
from tformer.training.losses import IGNORE_INDEX
from tformer.training.tasks import (
    CLMTask,
    IndexStream,
    MLMTask,
    collate_pairs,
    generator,
    greedy_decode,
    mask_tokens,
    mix_seed,
    pad_rows,
    shard,
)
from tformer.training.tasks.classify import encode_examples, label_names
from tformer.training.tasks.clm import build_token_cache, open_token_cache
from tformer.training.tasks.files import check_files, read_records
from tformer.training.tasks.synthetic import SyntheticTask, synthetic_tokenizer

from .helpers import write_text


def test_mix_seed_separates_nearby_inputs():
    seeds = {mix_seed(1337, s, m) for s in range(50) for m in range(4)}
    assert len(seeds) == 200 and mix_seed(1, 2) != mix_seed(2, 1)


def test_clm_windows_are_shifted_by_one_and_deterministic():
    tokens = np.arange(1000, dtype=np.uint16)
    task = CLMTask(tokens, tokens[:100], block_size=16, batch_size=4, grad_accum=1, seed=0, eval_batches=2)
    batch = task.train_batch(1, 0)
    assert batch["input_ids"].shape == (4, 16) and batch["input_ids"].dtype == torch.long
    assert torch.equal(batch["labels"], batch["input_ids"] + 1)  # consecutive ids: labels are the next token
    assert torch.equal(task.train_batch(1, 0)["input_ids"], batch["input_ids"])
    assert not torch.equal(task.train_batch(2, 0)["input_ids"], batch["input_ids"])
    evals = task.eval_batches()
    assert len(evals) == 2 and int(evals[0]["labels"].max()) < 100


def test_clm_refuses_data_shorter_than_a_block():
    tokens = np.arange(10, dtype=np.uint16)
    with pytest.raises(DataError, match="block_size"):
        CLMTask(tokens, tokens[:0], block_size=16, batch_size=2, grad_accum=1, seed=0, eval_batches=1)


def test_token_cache_is_reused_until_the_source_changes(tmp_path):
    src = write_text(tmp_path / "a.txt", n=50)
    tok = CharTokenizer.train(src.read_text())
    meta = build_token_cache([src], tok, tmp_path / "cache", val_fraction=0.1)
    train, val = open_token_cache(meta)
    assert train.dtype == np.uint16 and isinstance(train, np.memmap)
    text = src.read_text()
    assert len(train) + len(val) == len(text) and len(val) == int(len(text) * 0.1)
    assert tok.decode(train[:20].tolist()) == text[:20]
    stamp = (meta.stat().st_mtime_ns, meta.with_suffix(".train.bin").stat().st_mtime_ns)
    assert build_token_cache([src], tok, tmp_path / "cache", 0.1) == meta  # re-used
    assert (meta.stat().st_mtime_ns, meta.with_suffix(".train.bin").stat().st_mtime_ns) == stamp
    src.write_text(text + "the cat.\n")
    os.utime(src, ns=(stamp[0] + 10**9, stamp[0] + 10**9))
    assert build_token_cache([src], tok, tmp_path / "cache", 0.1) != meta  # rebuilt
    assert json.loads(meta.read_text())["dtype"] == "uint16"


def test_bert_masking_rates_and_never_special_tokens():
    gen = generator(0)
    ids = torch.randint(5, 100, (64, 128), generator=gen)
    ids[:, 0], ids[:, -1] = 1, 2  # [CLS] ... [SEP]
    ids[:, -20:-1] = 0  # padding
    special = torch.isin(ids, torch.tensor([0, 1, 2]))
    inputs, labels = mask_tokens(ids, special, mask_id=3, random_ids=torch.arange(5, 100), gen=gen)
    selected = labels != IGNORE_INDEX
    assert not selected[special].any()  # special and padding tokens are never masked
    assert torch.equal(labels[selected], ids[selected])
    eligible = (~special).sum().item()
    assert abs(selected.sum().item() / eligible - 0.15) < 0.01
    n = selected.sum().item()
    as_mask = (inputs[selected] == 3).sum().item() / n
    unchanged = (inputs[selected] == ids[selected]).sum().item() / n
    assert abs(as_mask - 0.8) < 0.03 and 0.08 < unchanged < 0.13  # 10% kept (+ random hits of itself)
    assert torch.equal(inputs[~selected], ids[~selected])


def test_mlm_batches_are_framed_and_masked():
    tok = CharTokenizer.train("abcdefgh", special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tokens = np.array(tok.encode("abcdefgh" * 50), dtype=np.uint16)
    task = MLMTask(tokens, tokens[:40], 16, tok, batch_size=8, grad_accum=1, seed=0, eval_batches=1)
    batch = task.train_batch(1, 0)
    assert batch["input_ids"].shape == (8, 16)
    assert (batch["input_ids"][:, 0] == tok.cls_token_id).all() and (
        batch["input_ids"][:, -1] == tok.sep_token_id
    ).all()
    assert (batch["labels"][:, [0, -1]] == IGNORE_INDEX).all() and (batch["labels"] != IGNORE_INDEX).any()


def test_seq2seq_teacher_forcing_and_padding():
    batch = collate_pairs([([5, 6, 2], [7, 8, 9]), ([5, 2], [7])], start_id=1, eos_id=2, pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 2], [5, 2, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["decoder_input_ids"].tolist() == [[1, 7, 8, 9], [1, 7, 0, 0]]
    assert batch["decoder_attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["labels"].tolist() == [[7, 8, 9, 2], [7, 2, -100, -100]]


def test_synthetic_copy_and_reverse():
    tok = synthetic_tokenizer(10)
    assert tok.vocab_size == 13 and tok.decode([0, 1, 2]) == "abc"
    for kind in ("copy", "reverse"):
        task = SyntheticTask(kind, 10, 6, tok, batch_size=4, grad_accum=1, seed=0, eval_batches=1)
        b = task.train_batch(3, 0)
        src = b["input_ids"][:, :-1]
        tgt = b["labels"][:, :-1]
        assert torch.equal(tgt, src if kind == "copy" else src.flip(1))
        assert (b["input_ids"][:, -1] == tok.eos_token_id).all() and (
            b["labels"][:, -1] == tok.eos_token_id
        ).all()
        assert (b["decoder_input_ids"][:, 0] == tok.bos_token_id).all()


def test_index_stream_visits_every_example_once_per_epoch():
    stream = IndexStream(10, seed=3)
    first, second = stream.take(0, 10), stream.take(10, 10)
    assert sorted(first) == list(range(10)) == sorted(second) and first != second
    assert stream.take(5, 10) == first[5:] + second[:5]


def test_shard_and_pad_rows():
    batch = {"x": torch.arange(8).view(4, 2)}
    assert shard(batch, 1, 2)["x"].tolist() == [[4, 5], [6, 7]]
    with pytest.raises(ValueError):
        shard(batch, 0, 3)
    ids, mask = pad_rows([[5, 6], [7]], 0)
    assert ids.tolist() == [[5, 6], [7, 0]] and mask.tolist() == [[1, 1], [1, 0]]


def test_classification_labels_and_framing():
    assert label_names(["neg", "pos", "neg"]) == ["neg", "pos"]
    assert label_names(["2", "0"]) == ["0", "1", "2"]
    tok = CharTokenizer.train("abc", special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    ((ids, label),) = encode_examples([("abcabc", "pos")], tok, ["neg", "pos"], block_size=5)
    assert ids == [tok.cls_token_id, 0, 1, 2, tok.sep_token_id] and label == 1
    with pytest.raises(DataError, match="not one of"):
        encode_examples([("a", "maybe")], tok, ["neg", "pos"], 5)


def test_record_files(tmp_path):
    (tmp_path / "p.tsv").write_text("a b\tb a\nc\tc\n")
    assert read_records(tmp_path / "p.tsv", ("source", "target")) == [("a b", "b a"), ("c", "c")]
    (tmp_path / "p.jsonl").write_text('{"source": "x", "target": "y"}\n\n{"source": "z"}\n')
    with pytest.raises(DataError, match="p.jsonl:3"):
        read_records(tmp_path / "p.jsonl", ("source", "target"))
    (tmp_path / "c.csv").write_text('text,label\n"hello, world",pos\n')
    assert read_records(tmp_path / "c.csv", ("text", "label")) == [("hello, world", "pos")]
    (tmp_path / "bad.csv").write_text("words,y\na,b\n")
    with pytest.raises(DataError, match="header"):
        read_records(tmp_path / "bad.csv", ("text", "label"))


def test_missing_and_empty_files_are_data_errors(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="does not exist"):
        check_files([tmp_path / "nope.txt"])
    with pytest.raises(DataError, match="is empty"):
        check_files([tmp_path / "empty.txt"])
    with pytest.raises(DataError, match="no data files"):
        check_files([])


def _uncached_greedy(model, input_ids, attention_mask, start_id, max_len):
    """The reference: greedy decoding as the synthetic tasks ran it before it went through
    ``model.generate`` (no cache, the decoder input growing by concatenation, no stop at EOS)."""
    memory = model.encode(input_ids, attention_mask)
    out = torch.full((input_ids.shape[0], 1), start_id, dtype=torch.long)
    for _ in range(max_len):
        logits = model.decode(out, memory, attention_mask).logits[:, -1]  # (B, V)
        out = torch.cat([out, logits.argmax(-1, keepdim=True)], dim=1)
    return out[:, 1:]


@pytest.mark.parametrize("preset, seed", [("transformer-tiny", 2), ("t5-tiny", 5)])
def test_greedy_decode_through_generate_equals_the_uncached_loop(preset, seed):
    import tformer

    torch.manual_seed(seed)
    model = tformer.build(
        preset,
        vocab_size=8,
        d_model=32,
        n_heads=2,
        d_ff=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    ).eval()
    with torch.no_grad():  # weights larger than the initialisation's: argmaxes that vary
        for p in model.parameters():
            p.normal_(0.0, 1.0)
    gen = torch.Generator().manual_seed(1)
    pairs = [(torch.randint(3, 8, (n,), generator=gen).tolist() + [2], []) for n in (3, 7, 5, 6)]
    batch = collate_pairs(pairs, start_id=1, eos_id=2, pad_id=0)  # padded sources
    with torch.no_grad():
        expected = _uncached_greedy(model, batch["input_ids"], batch["attention_mask"], 1, 12)
    got = greedy_decode(model, batch["input_ids"], batch["attention_mask"], 1, 12)
    assert torch.equal(got, expected)
    assert (expected[:, :-1] == 2).any()  # an EOS before the end stops no row
    assert model.decoder.layers[0].attn.cache is None  # generate freed its caches
