"""Every attention kind inside real models: it builds from a preset by name, trains, saves and loads."""

from __future__ import annotations

import pytest
import torch

import tformer
from tformer.attention_params import ATTENTION_PARAMS
from tformer.nn.attention_kinds import KINDS

# small parameters so that the efficient paths (not a window covering everything) run at T = 32
PARAMS = {
    "exact": {},
    "local_global": {"window": 3},
    "block_sparse": {"block_size": 4, "window_blocks": 1, "global_blocks": 1, "random_blocks": 1},
    "performer": {"nb_features": 32, "chunk_size": 8},
    "linformer": {"k": 16},
}
TINY = dict(vocab_size=24, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_seq_len=32)


def test_the_registry_and_the_config_list_the_same_kinds():
    assert list(KINDS) == list(ATTENTION_PARAMS) == list(PARAMS)


@pytest.mark.parametrize("kind", ["exact", "local_global", "block_sparse", "performer", "linformer"])
def test_a_preset_builds_with_any_kind_by_name(kind):
    model = tformer.build("bert-tiny", attention_kind=kind)
    assert model.config.attention_kind == kind
    assert (model.body.layers[0].attn.kind is None) == (kind == "exact")
    out = model(torch.randint(0, 512, (1, 20)))
    assert out.logits.shape == (1, 20, 512) and torch.isfinite(out.logits).all()


def arithmetic_batch(g: torch.Generator, B: int = 16, T: int = 32, V: int = 24):
    """Rows x_t = a + d t (mod V): each token follows from its neighbours."""
    a, d = torch.randint(0, V, (B, 1), generator=g), torch.randint(1, 4, (B, 1), generator=g)
    return (a + d * torch.arange(T)) % V


def train(model, loss_fn, steps: int = 60) -> tuple[float, float]:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for _ in range(steps):
        loss = loss_fn(model, arithmetic_batch(g))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return sum(losses[:5]) / 5, sum(losses[-5:]) / 5


def next_token_loss(model, ids):
    logits = model(ids[:, :-1]).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def masked_token_loss(model, ids):
    """Every fourth token replaced by token 0 (the mask) and predicted from the others."""
    masked = ids.clone()
    masked[:, 1::4] = 0
    logits = model(masked).logits[:, 1::4]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1::4].reshape(-1))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["exact", "local_global", "block_sparse", "performer", "linformer"])
def test_each_kind_trains(kind):
    if kind == "linformer":  # bidirectional only: a masked-token task, slower to learn in 60 steps
        model = tformer.build("bert-tiny", **TINY, attention_kind=kind, attention_params=PARAMS[kind])
        first, last = train(model, masked_token_loss)
        assert last < 0.85 * first, (first, last)
    else:
        model = tformer.build("gpt-tiny", **TINY, attention_kind=kind, attention_params=PARAMS[kind])
        first, last = train(model, next_token_loss)
        assert last < 0.6 * first, (first, last)


@pytest.mark.parametrize("kind", ["local_global", "block_sparse", "performer", "linformer"])
def test_a_model_saves_and_loads_with_its_kind(kind, tmp_path):
    preset = "bert-tiny" if kind == "linformer" else "gpt-tiny"
    params = {**PARAMS[kind], "redraw_interval": 1} if kind == "performer" else PARAMS[kind]
    model = tformer.build(preset, **TINY, attention_kind=kind, attention_params=params)
    if kind == "performer":  # redrawn features must travel with the weights
        model.train()
        model(torch.randint(0, 24, (1, 8)))
    model.eval()
    model.save_pretrained(tmp_path)
    loaded = tformer.from_pretrained(tmp_path)
    assert (
        loaded.config.attention_kind == kind
        and loaded.config.attention_params == model.config.attention_params
    )
    ids = torch.randint(1, 24, (2, 30))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["local_global", "block_sparse", "performer"])
def test_encoder_decoder_generation_with_a_kind_equals_uncached(kind):
    torch.manual_seed(0)
    model = tformer.build("bart-tiny", **TINY, attention_kind=kind, attention_params=PARAMS[kind]).eval()
    src = torch.randint(3, 24, (2, 30))
    options = dict(max_new_tokens=12, do_sample=False)
    assert torch.equal(model.generate(src, **options), model.generate(src, use_cache=False, **options))
