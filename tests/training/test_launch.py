"""The launcher's pieces: the run flags folded into the training config; what training modules import."""

import ast
from pathlib import Path

import pytest

import tformer.training
from tformer.errors import ConfigError
from tformer.presets import get_preset
from tformer.training.config import TrainConfig
from tformer.training.launch import RunSpec, resolve_block_size, run_flag_changes

TRAINING = Path(tformer.training.__file__).parent


def test_run_flags_fold_into_the_training_config_once_for_new_and_resumed_runs(tmp_path):
    flags = dict(max_steps=7, minutes=1.5, device="cpu")
    assert run_flag_changes(RunSpec(out=tmp_path, **flags)) == {
        "max_steps": 7,
        "max_minutes": 1.5,
        "device": "cpu",
    }
    # a resumed run keeps its own time budget
    assert run_flag_changes(RunSpec(out=tmp_path, resume=True, **flags)) == {"max_steps": 7, "device": "cpu"}
    assert run_flag_changes(RunSpec(out=tmp_path)) == {}


def test_block_size_defaults_and_limits():
    gpt, transformer = get_preset("gpt-tiny", max_seq_len=32), get_preset("transformer-tiny", max_seq_len=12)
    assert resolve_block_size(TrainConfig(), gpt).block_size == 32
    assert resolve_block_size(TrainConfig(task="copy", synthetic_len=10), transformer).block_size == 11
    with pytest.raises(ConfigError, match="block_size=33 exceeds the model's context max_seq_len=32"):
        resolve_block_size(TrainConfig(block_size=33), gpt)
    # with learned or sinusoidal positions, evaluation's generation needs one more position than the block
    with pytest.raises(ConfigError, match="synthetic_len=11 leaves no room"):
        resolve_block_size(TrainConfig(task="reverse", synthetic_len=11), transformer)
    t5 = get_preset("t5-tiny", max_seq_len=12)  # relative positions: no limit
    assert resolve_block_size(TrainConfig(task="reverse", synthetic_len=11), t5).block_size == 12


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, at the top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "path", sorted(TRAINING.rglob("*.py")), ids=lambda p: p.relative_to(TRAINING).as_posix()
)
def test_training_imports_only_point_down(path):
    """Training sits above models and below the CLI: never the package root (which loads models), model
    loading, interop, generation (models generate) or the CLI; evaluation never needs the launcher."""
    above = ("tformer.generation", "tformer.interop", "tformer.loading", "tformer.cli")
    for name in imported_modules(path):
        assert name != "tformer" and not name.startswith(above), name
    if path.name != "launch.py":
        assert "tformer.training.launch" not in imported_modules(path)
