"""The task registry: one table of task names for the config, training, evaluation and the CLI."""

from typing import get_args

import pytest

from tformer.cli import build_parser
from tformer.errors import ConfigError, DataError
from tformer.presets import get_preset
from tformer.training.config import TaskName, TrainConfig
from tformer.training.tasks import TASK_NAMES, TASKS, TaskSetup, build_task, task_class
from tformer.training.tokenization import train_tokenizer

from .helpers import write_classify, write_pairs


def _choices(command: str) -> tuple[str, ...]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    parser = sub.choices[command]
    return tuple(next(a for a in parser._actions if a.dest == "task").choices)


def test_the_registry_names_exactly_the_configs_tasks_and_the_cli_offers_them():
    assert TASK_NAMES == tuple(TASKS) == get_args(TaskName)
    assert _choices("train") == _choices("eval") == TASK_NAMES


@pytest.mark.parametrize("name", TASK_NAMES)
def test_each_task_defaults_to_a_preset_of_the_family_it_trains(name):
    cls = task_class(name)
    assert get_preset(cls.default_preset).arch == cls.arch


def test_an_unknown_task_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match="unknown task 'translate'; choose one of clm, mlm"):
        task_class("translate")


def _setup(task, data, **kw):
    texts, records = task_class(task).read_inputs([data])
    tok = train_tokenizer("char", task, texts, vocab_size=512)
    if task == "classify":
        model = get_preset(
            "bert-tiny",
            vocab_size=tok.vocab_size,
            **task_class(task).model_changes(get_preset("bert-tiny"), records),
        )
    else:
        model = get_preset(
            "transformer-tiny", vocab_size=tok.vocab_size, decoder_start_token_id=tok.bos_token_id
        )
    cfg = TrainConfig(task=task, block_size=32, batch_size=8, seed=3, eval_batches=2, val_fraction=0.25)
    return TaskSetup(cfg, tok, model, [data], **kw)


@pytest.mark.parametrize("task, write", [("seq2seq", write_pairs), ("classify", write_classify)])
def test_example_tasks_hold_out_a_share_and_evaluation_uses_everything(tmp_path, task, write):
    data = write(tmp_path / ("d.tsv" if task == "seq2seq" else "d.csv"), n=40)
    train = build_task(_setup(task, data))
    assert len(train.train) == 30 and len(train.val) == 10 and len(train.eval_batches()) == 2
    assert sorted(train.train + train.val) == sorted(build_task(_setup(task, data, evaluate_only=True)).val)
    evaluation = build_task(_setup(task, data, evaluate_only=True))
    assert evaluation.train is evaluation.val and len(evaluation.val) == 40
    assert len(evaluation.eval_batches()) == 5  # all 40 examples in batches of 8, unless limited:
    assert len(build_task(_setup(task, data, evaluate_only=True, max_eval_batches=2)).eval_batches()) == 2


def test_a_classification_model_gets_a_head_over_the_datas_labels(tmp_path):
    _, records = task_class("classify").read_inputs([write_classify(tmp_path / "d.csv")])
    changes = task_class("classify").model_changes(get_preset("bert-tiny"), records)
    assert changes["head"] == "classification" and changes["num_labels"] == 2
    assert changes["extra"]["labels"] == ["pets", "things"]
    assert task_class("mlm").model_changes(get_preset("bert-tiny"), []) == {"head": "mlm"}
    assert task_class("clm").model_changes(get_preset("gpt-tiny"), []) == {}


def test_the_image_task_fits_a_preset_to_the_images_and_keeps_a_pretrained_models_size(tmp_path):
    import numpy as np

    np.savez(tmp_path / "imgs.npz", images=np.zeros((6, 8, 8, 3), np.uint8), labels=np.array([2, 5] * 3))
    task = task_class("image-classify")
    assert task.arch == "vit" and not task.uses_tokenizer
    texts, records = task.read_inputs(task.check_data([str(tmp_path / "imgs.npz")]))
    preset = get_preset("vit-tiny")  # 32x32 images, 4x4 patches
    fitted = task.model_changes(preset, records)
    assert texts == [] and (fitted["image_size"], fitted["num_channels"], fitted["max_seq_len"]) == (8, 3, 5)
    assert (fitted["head"], fitted["num_labels"], fitted["extra"]["labels"]) == (
        "classification",
        2,
        ["2", "5"],
    )
    kept = task.model_changes(preset, records, pretrained=True)
    assert (kept["image_size"], kept["max_seq_len"]) == (32, 65)  # positions are interpolated
    with pytest.raises(DataError, match="takes one --data source"):
        task.check_data(["a.npz", "b.npz"])
