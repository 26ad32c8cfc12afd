"""`tformer train --init-from / --freeze / --lora`, `tformer merge-lora`, and image classification, run as a
user would. The pretrained model is a tiny Hugging Face BERT built offline with a WordPiece vocabulary."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import tformer
from tests.parity.helpers import perturb
from tests.training.helpers import WORDS, write_classify, write_text
from tformer.cli import main

transformers = pytest.importorskip("transformers")

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *WORDS]
SMALL = ["batch_size=8", "num_threads=1", "log_every=1", "warmup_steps=2", "eval_batches=2", "eval_every=2"]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A BertModel directory (config.json, model.safetensors, vocab.txt)."""
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=32,
        pad_token_id=0,
    )
    hf = transformers.BertModel(cfg).eval()
    perturb(hf)
    d = tmp_path_factory.mktemp("bert")
    hf.save_pretrained(d)
    (d / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return d


def train(*args, sets=SMALL):
    argv = ["train", *map(str, args), "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    return main(argv)


def error(capsys, *args) -> str:
    capsys.readouterr()
    assert train(*args) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_lora_classifier_from_a_bert_directory_loads_in_peft(bert_dir, tmp_path, capsys):
    peft = pytest.importorskip("peft")
    data, out = write_classify(tmp_path / "pets.csv"), tmp_path / "run"
    args = ["--init-from", bert_dir, "--task", "classify", "--data", data, "--out", out, "--max-steps", 4]
    assert train(*args, "--lora", "r=4,alpha=8,targets=q,v", sets=[*SMALL, "lr=1e-2"]) == 0
    err = capsys.readouterr().err
    assert "new (randomly initialised): head.1.weight, head.1.bias" in err
    assert "trainable parameters:" in err
    run = json.loads((out / "run.json").read_text())
    assert run["train_config"]["init_from"] == str(bert_dir) and run["preset"] is None
    # the run directory: a merged model (plain tformer dir) and the adapter (PEFT format, BERT names)
    ours = tformer.from_pretrained(out)
    assert ours.config.extra["hf_architecture"] == "BertForSequenceClassification"
    meta = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert meta["modules_to_save"] == ["classifier", "bert.pooler.dense"]
    assert "bert.encoder.layer.0.attention.self.query" in meta["target_modules"]
    hf = transformers.BertForSequenceClassification.from_pretrained(bert_dir, num_labels=2).eval()
    theirs = peft.PeftModel.from_pretrained(hf, out / "adapter").eval()
    ids = torch.tensor([[2, 8, 9, 10, 3], [2, 11, 12, 13, 3]])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, theirs(input_ids=ids).logits, rtol=0, atol=1e-5)

    # a LoRA run resumes with its adapters (the checkpoint holds them beside the frozen base)
    assert train("--out", out, "--max-steps", 5, "--resume", sets=[]) == 0
    ours = tformer.from_pretrained(out)
    theirs = peft.PeftModel.from_pretrained(
        transformers.BertForSequenceClassification.from_pretrained(bert_dir, num_labels=2), out / "adapter"
    ).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, theirs(input_ids=ids).logits, rtol=0, atol=1e-5)

    # merge-lora gives the same model from the base directory and the adapter
    merged = tmp_path / "merged"
    base = tmp_path / "base"
    base_model = tformer.from_pretrained(bert_dir)
    from tformer.training.finetune import fit_head

    cls_model = tformer.build(fit_head(base_model.config, "classification", 2, ["a", "b"]), init=False)
    from tformer.peft import transfer_weights

    transfer_weights(cls_model, base_model)
    cls_model.save_pretrained(base)
    assert (
        main(["merge-lora", "--model", str(base), "--adapter", str(out / "adapter"), "--out", str(merged)])
        == 0
    )
    with torch.no_grad():
        torch.testing.assert_close(
            tformer.from_pretrained(merged)(ids).logits, ours(ids).logits, rtol=0, atol=1e-5
        )


def test_freeze_and_layer_decay(bert_dir, tmp_path, capsys):
    data, out = write_classify(tmp_path / "pets.csv"), tmp_path / "run"
    args = ["--init-from", bert_dir, "--task", "classify", "--data", data, "--out", out, "--max-steps", 2]
    assert (
        train(*args, "--freeze", "embeddings", "--freeze", "layers:0", sets=[*SMALL, "layer_lr_decay=0.8"])
        == 0
    )
    err = capsys.readouterr().err
    model = tformer.from_pretrained(out)
    n_trainable = sum(
        p.numel() for n, p in model.named_parameters() if not n.startswith(("body.embed.", "body.layers.0."))
    )
    assert f"trainable parameters: {n_trainable:,} of {model.num_parameters():,}" in err
    base = tformer.from_pretrained(bert_dir)
    for name, t in base.state_dict().items():
        if name.startswith(("body.embed.", "body.layers.0.")):
            assert torch.equal(model.state_dict()[name], t), name  # frozen parts did not move
    assert not torch.equal(
        model.state_dict()["body.layers.1.ffn.up.weight"], base.state_dict()["body.layers.1.ffn.up.weight"]
    )


def test_mlm_head_is_added(bert_dir, tmp_path):
    data, out = write_text(tmp_path / "input.txt"), tmp_path / "run"
    assert (
        train(
            "--init-from",
            bert_dir,
            "--task",
            "mlm",
            "--data",
            data,
            "--out",
            out,
            "--max-steps",
            2,
            sets=[*SMALL, "block_size=16"],
        )
        == 0
    )
    cfg = tformer.from_pretrained(out).config
    assert cfg.head == "mlm" and cfg.extra["hf_architecture"] == "BertForMaskedLM"


def test_bad_fine_tuning_input(bert_dir, tmp_path, capsys):
    data, out = write_classify(tmp_path / "pets.csv"), tmp_path / "run"
    common = ["--init-from", bert_dir, "--data", data, "--out", out, "--max-steps", 1]
    assert "cannot take its head" in error(capsys, *common, "--task", "clm")
    assert "the model has 2 layers (0-1)" in error(
        capsys, *common, "--task", "classify", "--freeze", "layers:0-5"
    )
    assert "matches no module of this model; available: q, k, v, qkv, o, up, down" in error(
        capsys, *common, "--task", "classify", "--lora", "r=4,targets=wq"
    )
    assert "LoRA rank r must be an integer >= 1" in error(
        capsys, *common, "--task", "classify", "--lora", "r=0"
    )
    assert "--preset and --init-from" in error(capsys, *common, "--task", "classify", "--preset", "bert-tiny")
    assert not out.exists()  # refused before anything was written


# ---- images ------------------------------------------------------------------------------------------------
VIT = ["d_model=32", "n_heads=2", "d_ff=64", "n_layers=1", "patch_size=2", *SMALL]


def test_image_classify_from_an_npz_and_a_folder(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 96)
    images = (rng.random((96, 6, 6)) * 80 + labels[:, None, None] * 80).astype(np.uint8)  # brightness = class
    np.savez(tmp_path / "imgs.npz", images=images, labels=labels)
    out = tmp_path / "run"
    sets = [*VIT, "batch_size=16", "lr=3e-3", "val_fraction=0.25", "eval_every=40"]
    assert (
        train(
            "--task",
            "image-classify",
            "--data",
            tmp_path / "imgs.npz",
            "--out",
            out,
            "--max-steps",
            40,
            sets=sets,
        )
        == 0
    )
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m for m in metrics if m["split"] == "val"][-1]["accuracy"] >= 0.9  # chance: 1/3
    model = tformer.from_pretrained(out)
    cfg = model.config
    assert (cfg.arch, cfg.image_size, cfg.num_channels, cfg.num_labels) == ("vit", 6, 1, 3)
    assert model(torch.zeros(2, 1, 6, 6)).logits.shape == (2, 3)
    # `tformer eval` reads the same source: accuracy over all 96 images
    capsys.readouterr()
    assert main(["eval", "--model", str(out), "--data", str(tmp_path / "imgs.npz"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] >= 0.8

    root = tmp_path / "folder"
    for i, (img, label) in enumerate(zip(images[:24], labels[:24])):
        (root / f"class{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.stack([img] * 3, -1)).save(root / f"class{label}" / f"{i}.png")
    out2 = tmp_path / "run2"
    assert train("--task", "image-classify", "--data", root, "--out", out2, "--max-steps", 2, sets=VIT) == 0
    cfg = tformer.from_pretrained(out2).config
    assert cfg.num_channels == 3 and cfg.extra["labels"] == ["class0", "class1", "class2"]


def test_bad_image_input(tmp_path, capsys):
    from PIL import Image

    for name, size in (("a", 6), ("b", 8)):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        Image.new("L", (size, size)).save(tmp_path / "imgs" / name / "x.png")
    out = tmp_path / "run"
    assert "images of inconsistent sizes" in error(
        capsys, "--task", "image-classify", "--data", tmp_path / "imgs", "--out", out
    )
    np.savez(tmp_path / "odd.npz", images=np.zeros((4, 7, 7), np.uint8), labels=np.arange(4))
    assert "do not split into patch_size=2 patches" in error(
        capsys,
        "--task",
        "image-classify",
        "--data",
        tmp_path / "odd.npz",
        "--out",
        out,
        "--set",
        "patch_size=2",
    )


def test_digits_are_built_in(tmp_path):
    pytest.importorskip("sklearn")
    out = tmp_path / "run"
    assert (
        train("--task", "image-classify", "--data", "digits", "--out", out, "--max-steps", 2, sets=VIT) == 0
    )
    cfg = tformer.from_pretrained(out).config
    assert (cfg.image_size, cfg.num_channels, cfg.num_labels, cfg.extra["labels"][9]) == (8, 1, 10, "9")
