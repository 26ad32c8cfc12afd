"""Data parallelism: 2 processes (gloo, CPU) equal 1 process with the same global batch."""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tformer.training.launch import RunSpec, run_training

from .helpers import TINY, write_text

# No q/k/v bias: the key bias has an exactly-zero true gradient (softmax ignores a per-query constant), so its
# computed gradient is rounding noise that Adam scales up to lr-sized steps in either run.
ARGS = [*TINY, "batch_size=8", "dropout=0.0", "eval_every=2", "warmup_steps=1", "attn_bias=false"]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    data = write_text(tmp_path / "a.txt")
    run_training(
        RunSpec(
            out=tmp_path / "one",
            task="clm",
            preset="gpt-tiny",
            data=[str(data)],
            overrides=ARGS,
            max_steps=4,
            progress=False,
        )
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "tformer.cli",
        "train",
        "--task",
        "clm",
        "--preset",
        "gpt-tiny",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "two"),
        "--max-steps",
        "4",
        "--no-progress",
        "--device",
        "cpu",
    ]
    for a in ARGS:
        cmd += ["--set", a]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one, two = (
        load_file(tmp_path / "one" / "model.safetensors"),
        load_file(tmp_path / "two" / "model.safetensors"),
    )
    assert one.keys() == two.keys()
    start = tformer_initial(tmp_path)
    for name in one:
        torch.testing.assert_close(two[name], one[name], atol=1e-6, rtol=0)
        assert not torch.equal(one[name], start[name]) or name.endswith("bias")  # training moved the weights
    val_one = [
        line for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines() if '"val"' in line
    ]
    val_two = [
        line for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines() if '"val"' in line
    ]
    assert len(val_one) == len(val_two) == 2


def tformer_initial(tmp_path):
    """The initial weights of the run (same seed), to check that the compared weights did train."""
    import json

    import tformer

    cfg = tformer.ModelConfig.from_dict(
        json.loads((tmp_path / "one" / "run.json").read_text())["model_config"]
    )
    torch.manual_seed(json.loads((tmp_path / "one" / "run.json").read_text())["train_config"]["seed"])
    from tformer.io import unique_state_dict

    return unique_state_dict(tformer.build(cfg))
