"""Training tasks: each turns data into global batches and defines its loss and evaluation metrics."""

from tformer.training.tasks.base import Batch, IndexStream, Task, generator, mix_seed, pad_rows, shard
from tformer.training.tasks.classify import ClassifyTask
from tformer.training.tasks.clm import CLMTask
from tformer.training.tasks.mlm import MLMTask, mask_tokens
from tformer.training.tasks.seq2seq import Seq2SeqTask, collate_pairs, greedy_decode
from tformer.training.tasks.synthetic import SyntheticTask, synthetic_tokenizer

__all__ = [
    "Batch",
    "CLMTask",
    "ClassifyTask",
    "IndexStream",
    "MLMTask",
    "Seq2SeqTask",
    "SyntheticTask",
    "Task",
    "collate_pairs",
    "generator",
    "greedy_decode",
    "mask_tokens",
    "mix_seed",
    "pad_rows",
    "shard",
    "synthetic_tokenizer",
]
