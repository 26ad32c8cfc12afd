"""The training loop through its Python API: resume equality, the non-finite guard, exactness knobs."""

import math
import time

import numpy as np
import pytest
import torch

import tformer
from tformer.training.checkpoint import load_checkpoint
from tformer.training.config import TrainConfig
from tformer.training.launch import RunSpec, run_training
from tformer.training.tasks import CLMTask, SyntheticTask, synthetic_tokenizer
from tformer.training.trainer import CHECKPOINT, Trainer, TrainingStopped

from .helpers import TINY, losses, rows, tiny_seq2seq, write_text


def _spec(out, data, *extra, **kw):
    return RunSpec(
        out=out,
        task="clm",
        preset="gpt-tiny",
        data=[str(data)],
        progress=False,
        overrides=[*TINY, "dropout=0.1", "decay_steps=10", "eval_every=3", *extra],
        **kw,
    )


def test_resumed_run_repeats_the_uninterrupted_losses_exactly(tmp_path):
    data = write_text(tmp_path / "a.txt")
    straight = run_training(_spec(tmp_path / "straight", data, max_steps=10))
    run_training(_spec(tmp_path / "split", data, max_steps=4))
    resumed = run_training(RunSpec(out=tmp_path / "split", resume=True, max_steps=10, progress=False))
    a, b = losses(tmp_path / "straight"), losses(tmp_path / "split")
    assert sorted(a) == sorted(b) == list(range(1, 11))
    assert [a[s] for s in range(1, 11)] == [b[s] for s in range(1, 11)]  # bit for bit (fp32, CPU)
    assert a[10] < a[1]
    for p, q in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)
    assert straight.metrics == resumed.metrics


def test_interrupt_saves_a_checkpoint_that_resumes_exactly(tmp_path):
    data = write_text(tmp_path / "a.txt")
    run_training(_spec(tmp_path / "straight", data, max_steps=8))

    spec = _spec(tmp_path / "stopped", data, max_steps=8)
    calls = {"n": 0}
    original = CLMTask.loss

    def loss_then_ctrl_c(self, model, batch, label_smoothing=0.0):
        calls["n"] += 1
        if calls["n"] == 5:  # as if Ctrl-C arrived during step 5
            import signal

            signal.raise_signal(signal.SIGINT)
        return original(self, model, batch, label_smoothing)

    CLMTask.loss = loss_then_ctrl_c
    try:
        with pytest.raises(KeyboardInterrupt):
            run_training(spec)
    finally:
        CLMTask.loss = original
    assert load_checkpoint(tmp_path / "stopped" / CHECKPOINT)["step"] == 5  # the step finished, then saved
    run_training(RunSpec(out=tmp_path / "stopped", resume=True, progress=False))
    assert losses(tmp_path / "stopped") == losses(tmp_path / "straight")


def _tiny_trainer(tmp_path, **cfg):
    torch.manual_seed(0)
    model = tformer.build(
        "gpt-tiny", vocab_size=50, d_model=32, n_heads=2, d_ff=64, n_layers=1, max_seq_len=16
    )
    tokens = np.random.default_rng(0).integers(0, 50, 2000).astype(np.uint16)
    config = TrainConfig(block_size=16, batch_size=4, warmup_steps=0, log_every=1, num_threads=1, **cfg)
    task = CLMTask(
        tokens, tokens[:200], 16, batch_size=4, grad_accum=config.grad_accum, seed=0, eval_batches=1
    )
    return Trainer(model, task, config, tmp_path, progress=False)


def _nan_at(trainer, steps):
    original = trainer.task.loss
    calls = {"n": 0}

    def loss(model, batch, label_smoothing=0.0):
        calls["n"] += 1
        out = original(model, batch, label_smoothing)
        return out * float("nan") if calls["n"] in steps else out

    trainer.task.loss = loss


def test_non_finite_loss_skips_the_update(tmp_path):
    trainer = _tiny_trainer(tmp_path, max_steps=6, eval_every=100)
    _nan_at(trainer, {3})
    before = {}

    original_step = trainer.train_step

    def spy(step):
        before[step] = [p.detach().clone() for p in trainer.model.parameters()]
        stats = original_step(step)
        if step == 3:
            assert stats["skipped"]
            assert all(torch.equal(a, b) for a, b in zip(before[3], trainer.model.parameters()))
        return stats

    trainer.train_step = spy
    trainer.fit()
    skipped = [r for r in rows(tmp_path) if r.get("skipped")]
    assert [r["step"] for r in skipped] == [3] and skipped[0]["loss"] is None
    assert trainer.state.step == 6 and trainer.state.nan_streak == 0
    assert all(math.isfinite(p.sum().item()) for p in trainer.model.parameters())


def test_too_many_non_finite_losses_stop_with_the_last_good_checkpoint(tmp_path):
    trainer = _tiny_trainer(tmp_path, max_steps=20, eval_every=2, nan_patience=3)
    _nan_at(trainer, set(range(4, 100)))
    with pytest.raises(TrainingStopped, match="non-finite for 3 steps in a row.*last good checkpoint") as e:
        trainer.fit()
    assert "\n" not in str(e.value)
    assert trainer.state.step == 6
    assert load_checkpoint(tmp_path / CHECKPOINT)["step"] == 2  # steps 4 and 6 did not overwrite it


def test_gradient_checkpointing_and_accumulation_keep_the_losses(tmp_path):
    plain = _tiny_trainer(tmp_path / "a", max_steps=3, eval_every=100)
    plain.fit()
    ckpt = _tiny_trainer(tmp_path / "b", max_steps=3, eval_every=100, grad_checkpointing=True)
    ckpt.fit()
    assert [r["loss"] for r in rows(tmp_path / "a")] == pytest.approx(
        [r["loss"] for r in rows(tmp_path / "b")], abs=1e-6
    )
    accum = _tiny_trainer(tmp_path / "c", max_steps=3, eval_every=100, grad_accum=2)
    accum.fit()
    assert accum.state.tokens == 2 * plain.state.tokens  # two micro-batches per step


def test_bf16_autocast_trains_on_cpu(tmp_path):
    trainer = _tiny_trainer(tmp_path, max_steps=4, eval_every=4, precision="bf16")
    assert trainer.bf16
    metrics = trainer.fit()
    assert math.isfinite(metrics["loss"])
    assert not _tiny_trainer(tmp_path / "x", precision="auto").bf16  # auto: fp32 on CPU


def test_time_budget_fixes_max_steps(tmp_path):
    data = write_text(tmp_path / "a.txt")
    result = run_training(_spec(tmp_path / "run", data, max_steps=100000, minutes=0.03))
    saved = load_checkpoint(tmp_path / "run" / CHECKPOINT)["train_config"]
    assert saved["max_minutes"] is None and 6 <= saved["max_steps"] < 100000
    assert result.step == saved["max_steps"]


def test_time_budget_recovers_from_a_slow_start(tmp_path):
    """Steps that are slow at first (a busy machine) do not fix a short run: the estimate is re-made
    until half the time is spent, then frozen."""
    trainer = _tiny_trainer(tmp_path, max_steps=100000, eval_every=100000, max_minutes=0.05)  # 3 s
    real_step = trainer.train_step

    def slow_start(step):
        if step <= 6:
            time.sleep(0.1)
        return real_step(step)

    trainer.train_step = slow_start
    start = time.perf_counter()
    trainer.fit()
    wall = time.perf_counter() - start
    # the first estimate (0.1 s/step) alone would have allowed about 30 steps in 3 s
    assert trainer.state.step > 45
    assert trainer.cfg.max_minutes is None and trainer.cfg.max_steps == trainer.state.step
    assert 2.0 < wall < 20.0  # the budget, plus the final evaluation, checkpoint and plot


def _moe_trainer(tmp_path, coef):
    torch.manual_seed(0)
    model = tformer.build("mixtral-tiny", vocab_size=50, max_seq_len=16)
    tokens = np.random.default_rng(0).integers(0, 50, 2000).astype(np.uint16)
    config = TrainConfig(
        block_size=16,
        batch_size=4,
        warmup_steps=0,
        num_threads=1,
        router_aux_loss_coef=coef,
        weight_decay=0.0,
    )
    task = CLMTask(tokens, tokens[:200], 16, batch_size=4, grad_accum=1, seed=0, eval_batches=1)
    return Trainer(model, task, config, tmp_path, progress=False)


def test_router_balancing_loss_is_added_for_mixtures_of_experts(tmp_path):
    """Mixture-of-experts models add coef x the load-balancing loss: the reported loss stays the task's;
    the routers and everything before them get its gradient, while what no router sees (the last layer's
    experts, the final norm, an untied LM head) moves as without it (to float rounding)."""
    plain, balanced = _moe_trainer(tmp_path / "a", 0.0), _moe_trainer(tmp_path / "b", 1.0)
    s_plain, s_balanced = plain.train_step(1), balanced.train_step(1)
    assert s_balanced["loss"] == s_plain["loss"]
    assert "router_aux_loss" not in s_plain and s_balanced["router_aux_loss"] >= 1.0 - 1e-6  # 1.0 if balanced
    last = plain.model.config.n_layers - 1
    unseen = (f"layers.{last}.ffn.experts.", "body.norm.", "lm_head.")
    assert not plain.model.config.tie_word_embeddings
    lr = plain.cfg.lr  # AdamW's first step moves each weight by about lr
    routers = 0
    for (name, a), b in zip(plain.model.named_parameters(), balanced.model.parameters()):
        change = (a - b).abs().max().item()
        if any(u in name for u in unseen):
            assert change <= 1e-3 * lr, name
        elif ".ffn.router." in name:
            routers += 1
            assert change > 0.5 * lr, name
    assert routers == last + 1


def _pooled_balancing_loss(router_logits, top_k):
    """Reference: the Switch/Mixtral load-balancing loss pooled over all layers' (N, E) router logits,
    E * sum_e (share of routing slots on e) * (mean router probability of e), written out plainly."""
    probs = torch.cat(router_logits).float().softmax(-1)
    n_tokens, n_experts = probs.shape
    slots = torch.zeros(n_experts)
    for chosen in probs.topk(top_k, dim=-1).indices:
        slots[chosen] += 1
    return n_experts * (slots / (n_tokens * top_k) * probs.mean(0)).sum()


def test_mixture_of_experts_outputs_carry_the_balancing_loss_and_dense_outputs_none():
    torch.manual_seed(0)
    model = tformer.build("mixtral-tiny", vocab_size=50, max_seq_len=16)
    routed = []
    for name, module in model.named_modules():
        if name.endswith("ffn.router"):
            module.register_forward_hook(lambda m, args, out: routed.append(out))
    ids = torch.randint(0, 50, (3, 16))
    out = model(ids)
    assert len(routed) == model.config.n_layers
    torch.testing.assert_close(out.aux_loss, _pooled_balancing_loss(routed, model.config.n_experts_per_token))
    assert out.aux_loss.requires_grad
    dense = tformer.build(
        "gpt-tiny", vocab_size=50, d_model=32, n_heads=2, d_ff=64, n_layers=1, max_seq_len=16
    )
    assert dense(ids).aux_loss is None


def test_the_trainer_adds_and_reports_the_aux_loss_the_model_returns(tmp_path):
    trainer = _moe_trainer(tmp_path, 0.5)
    batch = trainer.task.train_batch(1, 0)
    with torch.no_grad():  # the same weights and batch the step starts from (no dropout)
        expected = trainer.model(batch["input_ids"]).aux_loss.item()
    stats = trainer.train_step(1)
    assert stats["router_aux_loss"] == pytest.approx(expected, rel=1e-6)


def test_exact_match_decodes_through_generate_inside_the_bf16_autocast_of_evaluation(tmp_path):
    tok = synthetic_tokenizer(6)
    torch.manual_seed(0)
    model = tiny_seq2seq(tok, n_layers=1)
    config = TrainConfig(
        task="copy",
        synthetic_len=6,
        block_size=7,
        batch_size=4,
        max_steps=2,
        eval_every=2,
        eval_batches=1,
        warmup_steps=0,
        precision="bf16",
        num_threads=1,
    )
    task = SyntheticTask("copy", 6, 6, tok, batch_size=4, grad_accum=1, seed=0, eval_batches=1)
    trainer = Trainer(model, task, config, tmp_path, progress=False)
    assert trainer.bf16
    metrics = trainer.fit()
    assert math.isfinite(metrics["loss"]) and 0.0 <= metrics["exact_match"] <= 1.0
