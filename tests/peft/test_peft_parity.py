"""tformer's adapters and PEFT's are interchangeable: the round trip both ways gives the same logits.

tformer -> PEFT: ``save_adapter`` then ``peft.PeftModel.from_pretrained(hf_model, dir)``.
PEFT -> tformer: ``peft.get_peft_model(...).save_pretrained(dir)`` then ``load_adapter``.
Tiny Hugging Face models are built offline and perturbed off their init (tests/parity does the same).
"""

from __future__ import annotations

import copy

import pytest
import torch

import tformer
from tests.parity.helpers import assert_close_scaled, hf_gpt2, hf_llama, perturb, right_padded_batch
from tformer.peft import LoraConfig, add_lora, load_adapter, merge_lora, save_adapter

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

VOCAB = 96


def hf_bert_classifier():
    cfg = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=32,
        num_labels=3,
        pad_token_id=0,
    )
    return transformers.BertForSequenceClassification(cfg)


FAMILIES = {"gpt2": lambda: hf_gpt2(VOCAB), "llama": lambda: hf_llama(VOCAB), "bert": hf_bert_classifier}


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """Per family: the perturbed HF model (eval) and the directory it was saved to."""
    torch.manual_seed(0)
    out = {}
    for name, make in FAMILIES.items():
        hf = make().eval()
        perturb(hf)
        d = tmp_path_factory.mktemp(name)
        hf.save_pretrained(d)
        out[name] = (hf, d)
    return out


def batch():
    return right_padded_batch(VOCAB, [9, 6], pad_id=0, seed=3)


@torch.no_grad()
def outputs(model, ids, mask):
    return model(input_ids=ids, attention_mask=mask).logits


@torch.no_grad()
def randomize_adapters(model, std=0.1):
    for name, p in model.named_parameters():
        if "lora_" in name or (p.requires_grad and ("head" in name or "classifier" in name)):
            p.add_(torch.randn_like(p) * std)


# (family, tformer targets, modules trained in full, bias)
OURS_TO_PEFT = [
    ("gpt2", ["q", "v"], [], "none"),  # q and v rows -> one block-diagonal c_attn adapter
    ("gpt2", ["qkv", "o", "up", "down"], [], "none"),
    ("gpt2", ["qkv"], [], "lora_only"),
    ("llama", ["q", "v"], [], "none"),
    (
        "llama",
        ["qkv", "o", "gate", "up", "down"],
        [],
        "none",
    ),  # whole qkv -> q_proj, k_proj, v_proj sharing A
    ("bert", ["q", "v"], ["head"], "none"),  # with the new classifier trained in full
    ("bert", ["q", "v", "down"], [], "lora_only"),
]


@pytest.mark.parametrize("family,targets,save,bias", OURS_TO_PEFT)
def test_tformer_adapter_loads_in_peft(bases, tmp_path, family, targets, save, bias):
    hf, base_dir = bases[family]
    ours = tformer.from_pretrained(base_dir)
    add_lora(ours, LoraConfig(r=4, lora_alpha=8, target_modules=targets, modules_to_save=save, bias=bias))
    randomize_adapters(ours)
    if bias != "none":
        with torch.no_grad():
            for p in ours.parameters():
                if p.requires_grad and p.dim() == 1:
                    p.add_(0.3)
    save_adapter(ours, tmp_path)
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(hf), tmp_path).eval()
    ids, mask = batch()
    want = outputs(theirs, ids, mask)
    assert (want - outputs(hf, ids, mask)).abs().max() > 1e-2  # the adapter changes the model
    assert_close_scaled(outputs(ours, ids, mask), want, mask if want.dim() == 3 else None)


# (family, PEFT target_modules, modules_to_save)
PEFT_TO_OURS = [
    ("gpt2", ["c_attn", "c_proj"], None),
    ("gpt2", ["c_fc"], None),
    ("llama", ["q_proj", "v_proj"], None),
    ("llama", ["k_proj", "o_proj", "gate_proj", "down_proj"], None),
    ("bert", ["query", "value"], ["classifier"]),
    ("bert", ["key", "dense"], None),
]


@pytest.mark.parametrize("family,targets,save", PEFT_TO_OURS)
def test_peft_adapter_loads_in_tformer(bases, tmp_path, family, targets, save):
    hf, base_dir = bases[family]
    torch.manual_seed(1)
    config = peft.LoraConfig(
        r=4,
        lora_alpha=16,
        target_modules=targets,
        modules_to_save=save,
        init_lora_weights=False,  # B != 0: a non-trivial adapter
        fan_in_fan_out=family == "gpt2",
    )
    theirs = peft.get_peft_model(copy.deepcopy(hf), config).eval()
    if save:
        randomize_adapters(theirs)
    theirs.save_pretrained(tmp_path)
    ours = load_adapter(tformer.from_pretrained(base_dir), tmp_path)
    ids, mask = batch()
    want = outputs(theirs, ids, mask)
    got = outputs(ours, ids, mask)
    assert_close_scaled(got, want, mask if want.dim() == 3 else None)
    merge_lora(ours)  # and merged, the same
    assert_close_scaled(outputs(ours, ids, mask), want, mask if want.dim() == 3 else None)


def test_rank_pattern_from_peft(bases, tmp_path):
    hf, base_dir = bases["llama"]
    config = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj"],
        rank_pattern={"v_proj": 2},
        alpha_pattern={"v_proj": 6},
        init_lora_weights=False,
    )
    theirs = peft.get_peft_model(copy.deepcopy(hf), config).eval()
    theirs.save_pretrained(tmp_path)
    ours = load_adapter(tformer.from_pretrained(base_dir), tmp_path)
    assert ours.body.layers[0].attn.qkv_proj.scaling == {"q": 2.0, "v": 3.0}
    ids, mask = batch()
    assert_close_scaled(outputs(ours, ids, mask), outputs(theirs, ids, mask), mask)


def test_vit_round_trip_both_ways(tmp_path):
    """ViT adapters use transformers 5's in-memory layer names (``vit.layers.0.attention.q_proj``)."""
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(
        image_size=16,
        patch_size=4,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        num_labels=5,
    )
    hf = transformers.ViTForImageClassification(cfg).eval()
    perturb(hf)
    hf.save_pretrained(tmp_path / "base")
    pixels = torch.randn(2, 3, 16, 16)
    ours = tformer.from_pretrained(tmp_path / "base")
    add_lora(ours, LoraConfig(r=4, target_modules=["q", "v", "up"], modules_to_save=["head"]))
    randomize_adapters(ours)
    save_adapter(ours, tmp_path / "ours")
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(hf), tmp_path / "ours").eval()
    with torch.no_grad():
        assert_close_scaled(ours(pixels).logits, theirs(pixel_values=pixels).logits)

    config = peft.LoraConfig(
        r=4, target_modules=["q_proj", "fc2"], modules_to_save=["classifier"], init_lora_weights=False
    )
    theirs = peft.get_peft_model(copy.deepcopy(hf), config).eval()
    randomize_adapters(theirs)
    theirs.save_pretrained(tmp_path / "theirs")
    ours = load_adapter(tformer.from_pretrained(tmp_path / "base"), tmp_path / "theirs")
    with torch.no_grad():
        assert_close_scaled(ours(pixels).logits, theirs(pixel_values=pixels).logits)
