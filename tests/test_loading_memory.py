"""Loading and saving cost about the weights' own size: peak resident memory, measured in a fresh process.

Each check runs in a child process that imports tformer, takes its resident memory as the baseline, resets
the kernel's high-water mark (``/proc/self/clear_refs``; a sampling thread where that is refused), then
loads, runs one forward pass, and (for the save check) writes the model (tformer's format and Hugging
Face's) and a training checkpoint. The peak
above the baseline must stay under 1.3x the loaded weights' bytes; the old loader (fp32 model, every tensor
read, converted and copied) peaked at 3-4x.

The checkpoints are Llama-shaped (~270 MB in bf16) and written here in Hugging Face's names and layout
(separate q/k/v projections that tformer fuses), single-file and sharded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.checkpoints import llama_config, llama_tensors, write_hf_dir

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")]

LIMIT = 1.3  # peak above the post-import baseline, in units of the loaded weights' bytes

# Llama-shaped, ~270 MB of weights in bf16
HF_CONFIG = llama_config(
    vocab_size=32000,
    hidden_size=1024,
    intermediate_size=2816,
    num_hidden_layers=6,
    num_attention_heads=16,
    num_key_value_heads=8,
    max_position_embeddings=512,
    dtype="bfloat16",
)

CHILD = r"""
import gc, json, sys, threading, time
import torch
import tformer
from tformer.training.checkpoint import save_checkpoint

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

class Peak:
    # the high-water mark since start(): the kernel's (reset through clear_refs) or a sampling thread's
    def start(self):
        gc.collect()
        self.base = status("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.kernel = status("VmHWM") <= self.base + (8 << 20)
        except OSError:
            self.kernel = False
        if not self.kernel:
            self.high, self.running = self.base, True
            def sample():
                while self.running:
                    self.high = max(self.high, status("VmRSS"))
                    time.sleep(0.001)
            self.thread = threading.Thread(target=sample, daemon=True)
            self.thread.start()
    def now(self):
        if self.kernel:
            return status("VmHWM") - self.base
        return max(self.high, status("VmRSS")) - self.base

directory, save_to = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
if save_to:  # the first optimizer imports torch._dynamo (~70 MB): an import, paid before the baseline
    torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
peak = Peak()
peak.start()
model = tformer.from_pretrained(directory)
after_load = peak.now()
with torch.no_grad():
    model(torch.arange(16)[None])
    after_forward = peak.now()
    for t in model.parameters():
        t.sum()  # every page of every weight resident (a forward pass reads only a few embedding rows)
after_touch = peak.now()
after_save = None
if save_to:
    model.save_pretrained(save_to)
    model.save_pretrained(save_to + "-hf", format="hf")  # q/k/v split again, as views
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # no optimizer state: the model is the payload
    save_checkpoint(save_to + "/ckpt.pt", model=model, optimizer=optimizer, step=0, scheduler={},
                    train_config={}, trainer_state={}, data_position={})
    after_save = peak.now()
tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}.values()
print(json.dumps({
    "weights": sum(t.numel() * t.element_size() for t in tensors),
    "dtypes": sorted({str(p.dtype) for p in model.parameters()}),
    "after_load": after_load, "after_forward": after_forward, "after_touch": after_touch,
    "after_save": after_save,
}))
"""


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """The same Llama weights as one Hugging Face file and as three shards with an index."""
    tensors = llama_tensors(HF_CONFIG, torch.bfloat16)
    return {
        "hf": write_hf_dir(tmp_path_factory.mktemp("hf_single"), HF_CONFIG, tensors),
        "sharded": write_hf_dir(tmp_path_factory.mktemp("hf_sharded"), HF_CONFIG, tensors, shards=3),
        "tformer": tmp_path_factory.mktemp("tformer") / "model",
    }


def _measure(directory: Path, save_to: Path | None = None) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(directory), str(save_to or "")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_within(m: dict, *keys: str) -> None:
    for key in keys:
        ratio = m[key] / m["weights"]
        assert ratio < LIMIT, f"{key}: peak {m[key] / 2**20:.0f} MiB = {ratio:.2f}x the weights' bytes"


def test_hf_checkpoint_needing_fused_qkv_loads_and_saves_in_about_its_size(checkpoints):
    """Load (q/k/v fused as tensors arrive), forward, then save_pretrained and a training checkpoint."""
    m = _measure(checkpoints["hf"], save_to=checkpoints["tformer"])
    assert m["dtypes"] == ["torch.bfloat16"]  # the checkpoint's dtype, not fp32
    assert m["weights"] > 250e6
    _assert_within(m, "after_load", "after_forward", "after_touch", "after_save")


def test_sharded_checkpoint_loads_in_about_its_size(checkpoints):
    m = _measure(checkpoints["sharded"])
    assert m["dtypes"] == ["torch.bfloat16"]
    _assert_within(m, "after_load", "after_forward", "after_touch")


def test_tformer_directory_loads_in_about_its_size(checkpoints):
    """The directory the first test saved: tformer's own format, kept memory-mapped."""
    if not (checkpoints["tformer"] / "config.json").is_file():
        _measure(checkpoints["hf"], save_to=checkpoints["tformer"])
    m = _measure(checkpoints["tformer"])
    assert m["dtypes"] == ["torch.bfloat16"]
    _assert_within(m, "after_load", "after_forward", "after_touch")
