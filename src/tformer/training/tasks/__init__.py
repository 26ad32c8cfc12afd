"""Training tasks: each turns data into global batches and defines its loss and evaluation metrics.

``TASKS`` maps every task name to its class; ``build_task(TaskSetup(...))`` builds one for a training run
or for evaluation.
"""

from tformer.training.tasks.base import (
    Batch,
    ExampleTask,
    IndexStream,
    Task,
    TaskSetup,
    generator,
    mix_seed,
    pad_rows,
    shard,
    split_examples,
)
from tformer.training.tasks.classify import ClassifyTask
from tformer.training.tasks.clm import CLMTask
from tformer.training.tasks.images import ImageClassifyTask
from tformer.training.tasks.mlm import MLMTask, mask_tokens
from tformer.training.tasks.registry import TASK_NAMES, TASKS, build_task, task_class
from tformer.training.tasks.seq2seq import Seq2SeqTask, collate_pairs, greedy_decode
from tformer.training.tasks.synthetic import SyntheticTask, synthetic_tokenizer

__all__ = [
    "TASKS",
    "TASK_NAMES",
    "Batch",
    "CLMTask",
    "ClassifyTask",
    "ExampleTask",
    "ImageClassifyTask",
    "IndexStream",
    "MLMTask",
    "Seq2SeqTask",
    "SyntheticTask",
    "Task",
    "TaskSetup",
    "build_task",
    "collate_pairs",
    "generator",
    "greedy_decode",
    "mask_tokens",
    "mix_seed",
    "pad_rows",
    "shard",
    "split_examples",
    "synthetic_tokenizer",
    "task_class",
]
