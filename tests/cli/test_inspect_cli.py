import subprocess
import sys

import tformer
from tformer.cli import main


def test_inspect_preset_prints_table(capsys):
    assert main(["inspect", "gpt2"]) == 0
    out = capsys.readouterr().out
    assert "124,439,808" in out and "KV cache/token" in out and "attention scores" in out


def test_inspect_model_directory(tmp_path, capsys):
    tformer.build("bert-tiny").save_pretrained(tmp_path)
    assert main(["inspect", str(tmp_path), "--seq-len", "16"]) == 0
    assert "params: total" in capsys.readouterr().out


def test_inspect_bad_target_is_one_line_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "tformer.cli", "inspect", "no-such-model"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "neither a model directory nor a preset" in proc.stderr


def test_invalid_config_in_directory_is_one_line(tmp_path):
    import json

    tformer.build("gpt-tiny").save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    raw["model"].update(n_heads=3, n_kv_heads=None, head_dim=None)
    (tmp_path / "config.json").write_text(json.dumps(raw))
    proc = subprocess.run(
        [sys.executable, "-m", "tformer.cli", "inspect", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "d_model=64 is not divisible by n_heads=3" in proc.stderr


def test_inspect_every_attention_kind(capsys):
    assert main(["inspect", "bert-tiny", "--seq-len", "4096", "--attention-kind", "all"]) == 0
    out = capsys.readouterr().out
    for kind in ("exact", "local_global", "block_sparse", "performer", "linformer"):
        assert f"\n{kind} " in out
    assert main(["inspect", "gpt-tiny", "--attention-kind", "all"]) == 0
    assert "linformer       n/a: attention_kind='linformer' is bidirectional only" in capsys.readouterr().out


def test_inspect_with_one_attention_kind(capsys):
    args = ["inspect", "bert-tiny", "--seq-len", "64", "--attention-kind", "local_global"]
    assert main([*args, "--attention-params", '{"window": 4}']) == 0
    assert "attention scores/layer (local_global) @ T=64 x batch 1" in capsys.readouterr().out
