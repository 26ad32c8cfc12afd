"""The task registry: every task name and the class that trains it, for training, evaluation and the CLI.

A task class carries what a run needs to know about it (the model family it trains, its default preset,
the tokenizer it needs, how it reads its data files) and builds itself with ``from_setup``, so adding a
task is one class and one line here.
"""

from __future__ import annotations

from tformer.errors import ConfigError
from tformer.training.config import TaskName
from tformer.training.tasks.base import Task, TaskSetup
from tformer.training.tasks.classify import ClassifyTask
from tformer.training.tasks.clm import CLMTask
from tformer.training.tasks.images import ImageClassifyTask
from tformer.training.tasks.mlm import MLMTask
from tformer.training.tasks.seq2seq import Seq2SeqTask
from tformer.training.tasks.synthetic import SyntheticTask

#: Task name -> class, in the order the CLI lists them (the names of ``TrainConfig.task``).
TASKS: dict[TaskName, type[Task]] = {
    "clm": CLMTask,
    "mlm": MLMTask,
    "seq2seq": Seq2SeqTask,
    "classify": ClassifyTask,
    "copy": SyntheticTask,
    "reverse": SyntheticTask,
    "image-classify": ImageClassifyTask,
}
TASK_NAMES: tuple[TaskName, ...] = tuple(TASKS)


def task_class(name: str) -> type[Task]:
    """The class of task ``name``; a ConfigError listing the tasks for an unknown name."""
    try:
        return TASKS[name]  # type: ignore[index]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}") from None


def build_task(setup: TaskSetup) -> Task:
    """The task ``setup.config.task`` over ``setup``'s data, for training or for evaluation only."""
    return task_class(setup.config.task).from_setup(setup)
