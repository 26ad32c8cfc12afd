"""The training loop: steps, evaluation, checkpoints, the non-finite-loss guard, progress and metrics.

Determinism: a step's batches come from ``task.train_batch(step, micro)`` and its dropout masks from the
global RNG reseeded with ``(seed, step, rank)``, so a run resumed from a checkpoint repeats the
uninterrupted run's losses exactly (in fp32 on CPU). RNG states are saved in checkpoints all the same.

Output directory layout (rank 0 writes it)::

    out/config.json, model.safetensors   the latest model (``tformer.from_pretrained(out)``)
    out/tformer_tokenizer.json           its tokenizer (``tformer.load_tokenizer(out)``)
    out/best/                            the best model by the task's headline metric, with tokenizer
    out/checkpoints/last.pt              everything needed to resume
    out/metrics.jsonl, out/loss.png      per-step and per-evaluation metrics, the loss curve
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from tformer.errors import TformerError
from tformer.peft import lora_layers, merged_copy, save_adapter
from tformer.training import distributed
from tformer.training.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from tformer.training.config import TrainConfig
from tformer.training.devices import resolve_device, shard_rows, to_device, use_bf16
from tformer.training.metrics import MetricsLog, plot_losses
from tformer.training.optim import build_optimizer, lr_at, set_lr
from tformer.training.rundir import CHECKPOINT
from tformer.training.tasks.base import Task, mix_seed, shard

logger = logging.getLogger("tformer.training")

#: with a time budget, steps between re-estimates of the step count (from the median of the last 2x)
_BUDGET_EVERY = 5


class TrainingStopped(TformerError):
    """Training cannot go on (e.g. the loss kept being non-finite); the last good checkpoint is kept."""


@dataclass
class TrainerState:
    """Counters saved in checkpoints."""

    step: int = 0
    best: float | None = None
    nan_streak: int = 0
    tokens: int = 0
    elapsed: float = 0.0  # seconds of training (evaluation included) over all sessions


class AuxLossTap:
    """Calls the model for a task's loss and keeps the auxiliary losses its outputs carry (``aux_loss``, a
    mixture-of-experts model's load balancing), so a task's ``loss`` sees an ordinary model."""

    def __init__(self, model: Callable[..., Any]) -> None:
        self.model = model
        self.losses: list[torch.Tensor] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the model and keep its ``aux_loss``, if any."""
        out = self.model(*args, **kwargs)
        aux = getattr(out, "aux_loss", None)
        if aux is not None:
            self.losses.append(aux)
        return out

    def total(self) -> torch.Tensor | None:
        """The sum of the auxiliary losses of every call so far; None when no output had one."""
        return sum(self.losses[1:], self.losses[0]) if self.losses else None


@dataclass
class _StepTimes:
    """Seconds per training step since ``first`` and in evaluations and checkpoints, for a time budget."""

    first: int
    durations: list[float] = field(default_factory=list)
    other: float = 0.0


class Trainer:
    """Trains ``model`` on ``task`` under ``cfg``, writing into ``out_dir``.

    Args:
        model: a tformer model (unwrapped); it is moved to the device.
        task: the objective and its data.
        cfg: the training configuration (``max_steps`` etc.).
        out_dir: the run directory.
        tokenizer: saved beside exported models when given.
        log: called with one-line messages (default: the ``tformer.training`` logger).
        progress: show a progress bar (rank 0 only).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        task: Task,
        cfg: TrainConfig,
        out_dir: str | Path,
        *,
        tokenizer: Any = None,
        log: Callable[[str], None] | None = None,
        progress: bool = True,
    ) -> None:
        self.cfg, self.task, self.tokenizer = cfg, task, tokenizer
        self.out = Path(out_dir)
        self._emit = log or logger.info
        self.progress = progress
        self.dist = distributed.env_info()
        self.device = resolve_device(cfg.device, self.dist.local_rank)
        self.dist = distributed.init(self.device)
        if cfg.batch_size % self.dist.world_size:
            raise TformerError(
                f"batch_size={cfg.batch_size} must be divisible by the {self.dist.world_size} processes"
            )
        self.bf16 = use_bf16(cfg.precision, self.device)
        self.model = model.to(self.device)
        self.model.set_gradient_checkpointing(cfg.grad_checkpointing)
        self.model.train()
        self.optimizer = build_optimizer(self.model, cfg, self.device)
        self.train_model = distributed.wrap(self.model, self.dist, self.device)
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.state = TrainerState()
        self.metrics = MetricsLog(self.out / "metrics.jsonl")
        self._stop_requested = False

    def log(self, message: str) -> None:
        """Emit a one-line message (rank 0 only)."""
        if self.dist.is_main:
            self._emit(message)

    # ---- state ------------------------------------------------------------------------------------
    def restore(self, path: str | Path | None = None) -> None:
        """Continue from a checkpoint (default ``out/checkpoints/last.pt``): weights, optimizer, counters, RNG."""
        payload = load_checkpoint(path or self.out / CHECKPOINT)
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.state = TrainerState(**payload["trainer_state"])
        set_rng_state(payload["rng"])
        if self.dist.is_main:
            self.metrics.truncate_after(self.state.step)
        self.log(f"resumed from step {self.state.step} ({path or self.out / CHECKPOINT})")

    def save(self) -> None:
        """Write the resumable checkpoint and export the model and tokenizer (rank 0)."""
        if self.dist.is_main:
            cfg, step = self.cfg, self.state.step
            scheduler = {
                "name": cfg.schedule,
                "step": step,
                "lr": lr_at(max(step, 1), cfg, self.model.config.d_model),
            }
            micro = step * cfg.grad_accum
            save_checkpoint(
                self.out / CHECKPOINT,
                model=self.model,
                optimizer=self.optimizer,
                step=step,
                scheduler=scheduler,
                train_config=cfg.to_dict(),
                trainer_state=asdict(self.state),
                data_position={"step": step, "micro_batches": micro, "examples": micro * cfg.batch_size},
            )
            self.export(self.out)
        distributed.barrier(self.dist)

    def export(self, directory: Path) -> None:
        """``save_pretrained`` plus the tokenizer: a directory generation can load. A LoRA run writes the
        model with its adapters merged, and the adapter alone in ``adapter/``."""
        model = self.model
        if lora_layers(model):
            save_adapter(model, Path(directory) / "adapter")
            model = merged_copy(model)
        model.save_pretrained(directory)
        if self.tokenizer is not None:
            self.tokenizer.save(directory)

    # ---- one step ---------------------------------------------------------------------------------
    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _micro_batches(self, step: int):
        for micro in range(self.cfg.grad_accum):
            batch = shard(self.task.train_batch(step, micro), self.dist.rank, self.dist.world_size)
            last = micro == self.cfg.grad_accum - 1
            sync = contextlib.nullcontext() if last or not self.dist.enabled else self.train_model.no_sync()
            yield to_device(batch, self.device), sync

    def train_step(self, step: int) -> dict[str, Any]:
        """One optimizer step (``step`` is 1-based); returns its statistics. Skips the update on a
        non-finite loss or gradient."""
        cfg = self.cfg
        lr = lr_at(step, cfg, self.model.config.d_model)
        set_lr(self.optimizer, lr)
        torch.manual_seed(mix_seed(cfg.seed, step, self.dist.rank, 0xD5))  # this step's dropout masks
        loss_sum, aux_sum, tokens, has_aux = self._accumulate_gradients(step)
        total, aux_total, tokens = distributed.all_reduce_sum(
            [loss_sum, aux_sum, float(tokens)], self.dist, self.device
        )
        n_micro = cfg.grad_accum * self.dist.world_size
        loss_value = total / n_micro  # the task's loss, without the auxiliary term
        max_norm = cfg.clip_norm if cfg.clip_norm else math.inf
        norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm, foreach=True))
        finite = math.isfinite(loss_value) and math.isfinite(norm)
        if finite:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        stats = {
            "loss": loss_value,
            "grad_norm": norm,
            "lr": lr,
            "tokens": int(tokens),
            "skipped": not finite,
        }
        if has_aux:
            stats["router_aux_loss"] = aux_total / n_micro
        return stats

    def _accumulate_gradients(self, step: int) -> tuple[float, float, int, bool]:
        """Forward and backward over the step's micro-batches on this process.

        The objective is the task's loss plus ``router_aux_loss_coef`` times the auxiliary loss the model
        returns (``aux_loss``: mixture-of-experts load balancing; skipped when the coefficient is 0).

        Returns:
            (summed task losses, summed auxiliary losses, tokens read, whether the model had an aux loss).
        """
        coef = self.cfg.router_aux_loss_coef
        loss_sum, aux_sum, tokens, has_aux = torch.zeros((), device=self.device), 0.0, 0, False
        for batch, sync in self._micro_batches(step):
            with sync:
                model = AuxLossTap(self.train_model)
                with self._autocast():
                    loss = self.task.loss(model, batch, self.cfg.label_smoothing)
                aux = model.total() if coef > 0 else None
                objective = loss if aux is None else loss + coef * aux
                (objective / self.cfg.grad_accum).backward()
            loss_sum += loss.detach().float()
            if aux is not None:
                aux_sum, has_aux = aux_sum + float(aux.detach()), True
            tokens += self.task.n_tokens(batch)
        return float(loss_sum), aux_sum, tokens, has_aux

    # ---- evaluation -------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """The task's metrics on its fixed evaluation batches, summed over processes."""
        batches = self.task.eval_batches()
        if not batches:
            return {}
        self.model.eval()
        sums: dict[str, float] = {}
        with self._autocast():
            for batch in batches:
                part = shard_rows(batch, self.dist.rank, self.dist.world_size)
                if part is None:
                    continue
                for k, v in self.task.eval_sums(self.model, to_device(part, self.device)).items():
                    sums[k] = sums.get(k, 0.0) + v
        self.model.train()
        keys = self.task.eval_keys  # fixed, so every process all-reduces the same list
        totals = distributed.all_reduce_sum([sums.get(k, 0.0) for k in keys], self.dist, self.device)
        return self.task.summarize(dict(zip(keys, totals)))

    def _improved(self, metrics: dict[str, float]) -> bool:
        value = metrics.get(self.task.best_metric)
        if value is None or not math.isfinite(value):
            return False
        best = self.state.best
        better = best is None or (value > best if self.task.larger_is_better else value < best)
        if better:
            self.state.best = value
        return better

    def run_eval(self, step: int) -> dict[str, float]:
        """Evaluate at ``step``; the main process logs, exports a new best model and redraws the plot."""
        metrics = self.evaluate()
        if not metrics:
            return metrics
        improved = self._improved(metrics)
        if self.dist.is_main:
            self.metrics.append({"split": "val", "step": step, **metrics})
            if improved:
                self.export(self.out / "best")
            self._plot()
        self.log(f"step {step}: " + ", ".join(f"val {k} {v:.4f}" for k, v in metrics.items()))
        return metrics

    def _plot(self) -> None:
        try:
            plot_losses(
                self.metrics.rows(), self.out / "loss.png", title=f"{self.task.name} ({self.out.name})"
            )
        except Exception as e:  # a plot must never end a training run
            self.log(f"could not draw loss.png: {e}")

    # ---- the loop ---------------------------------------------------------------------------------
    def _log_step(self, step: int, stats: dict[str, Any], tok_per_s: float) -> None:
        if stats["skipped"]:
            self.log(
                f"step {step}: non-finite loss or gradient ({stats['loss']}); update skipped "
                f"({self.state.nan_streak} in a row, limit {self.cfg.nan_patience})"
            )
        if self.dist.is_main and (
            step % self.cfg.log_every == 0 or stats["skipped"] or step == self.cfg.max_steps
        ):
            row = {
                "split": "train",
                "step": step,
                "loss": stats["loss"] if not stats["skipped"] else None,
                "lr": stats["lr"],
                "grad_norm": stats["grad_norm"] if math.isfinite(stats["grad_norm"]) else None,
                "tokens_per_s": round(tok_per_s, 1),
                "elapsed_s": round(self.state.elapsed, 3),
            }
            if "router_aux_loss" in stats:
                row["router_aux_loss"] = stats["router_aux_loss"]
            if stats["skipped"]:
                row["skipped"] = True
            self.metrics.append(row)

    def _guard(self, stats: dict[str, Any]) -> None:
        """Count non-finite steps in a row; stop after ``nan_patience`` of them."""
        self.state.nan_streak = self.state.nan_streak + 1 if stats["skipped"] else 0
        if self.state.nan_streak >= self.cfg.nan_patience:
            where = self.out / CHECKPOINT
            kept = (
                f"the last good checkpoint is {where}" if where.is_file() else "no checkpoint was written yet"
            )
            raise TrainingStopped(
                f"stopping at step {self.state.step}: the loss was non-finite for {self.state.nan_streak} steps "
                f"in a row; {kept}; lower lr or enable clipping and resume"
            )

    def _fix_budget(self, step: int, train_s: float, other_s: float, final: bool) -> None:
        """Turn ``max_minutes`` into ``max_steps`` from the measured time per step (rank 0 decides):
        ``train_s`` for the training step itself (a recent median, so stalls do not count), ``other_s``
        for evaluations and checkpoints per step so far (an eval's expected share until one has run).

        Until half the time is spent the estimate is provisional (re-made every few steps, and always
        leaving room for the next one), so a slow start on a busy machine does not cut the run short;
        then it is final and ``max_minutes`` is cleared.
        """
        cfg = self.cfg
        final = bool(distributed.broadcast_int(int(final), self.dist, self.device))  # every rank alike
        eval_share = cfg.eval_batches / (3.0 * cfg.grad_accum * cfg.eval_every)  # forward-only ~ 1/3 step
        per_step = train_s + max(other_s, train_s * eval_share)
        remaining = cfg.max_minutes * 60.0 - self.state.elapsed
        steps = step + max(int(remaining / per_step), 0)
        if not final:
            steps = max(steps, step + _BUDGET_EVERY)
        steps = distributed.broadcast_int(steps, self.dist, self.device)
        if cfg.decay_steps == cfg.max_steps:  # the horizon followed max_steps: keep it that way
            cfg.decay_steps = steps
        cfg.max_steps = max(steps, step)
        if final:
            cfg.max_minutes = None
            self.log(f"time budget: {cfg.max_steps} steps at {per_step * 1000:.0f} ms/step")

    def _install_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True

        return signal.signal(signal.SIGINT, handler)

    def _should_stop(self) -> bool:
        flag = float(self._stop_requested)
        return distributed.all_reduce_sum([flag], self.dist, self.device)[0] > 0

    def fit(self) -> dict[str, float]:
        """Train from ``state.step`` to ``cfg.max_steps``; returns the final evaluation metrics.

        Raises:
            TrainingStopped: too many non-finite losses in a row.
            KeyboardInterrupt: after Ctrl-C, once the checkpoint of the last finished step is written.
        """
        cfg = self.cfg
        if cfg.decay_steps is None:
            cfg.decay_steps = cfg.max_steps  # frozen: a resumed run with more steps keeps this horizon
        previous, threads = self._install_sigint(), torch.get_num_threads()
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        try:
            return self._loop()
        finally:
            torch.set_num_threads(threads)
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def _progress_bar(self):
        from tqdm.auto import tqdm

        return tqdm(
            total=self.cfg.max_steps,
            initial=self.state.step,
            unit="step",
            dynamic_ncols=True,
            disable=not (self.progress and self.dist.is_main),
            desc=self.task.name,
        )

    def _loop(self) -> dict[str, float]:
        cfg, state = self.cfg, self.state
        bar, metrics = self._progress_bar(), {}
        times = _StepTimes(first=state.step + 1)
        try:
            while state.step < cfg.max_steps:
                step, t0 = state.step + 1, time.perf_counter()
                stats = self.train_step(step)
                dt = time.perf_counter() - t0
                self._record_step(step, stats, dt, bar)
                if cfg.max_minutes is not None:
                    self._track_budget(step, dt, times, bar)
                t1 = time.perf_counter()
                metrics = self._after_step(step) or metrics
                times.other += time.perf_counter() - t1
                if self._should_stop():
                    self.save()
                    self.log(f"stopped at step {step}; checkpoint saved; continue with --resume")
                    raise KeyboardInterrupt
        finally:
            bar.close()
        return metrics

    def _record_step(self, step: int, stats: dict[str, Any], dt: float, bar: Any) -> None:
        """Count a finished step (``dt`` seconds), guard against non-finite losses, log it, move the bar."""
        state = self.state
        state.step, state.elapsed, state.tokens = step, state.elapsed + dt, state.tokens + stats["tokens"]
        self._guard(stats)
        tok_per_s = stats["tokens"] / max(dt, 1e-9)
        self._log_step(step, stats, tok_per_s)
        bar.set_postfix(loss=f"{stats['loss']:.4f}", tok_s=f"{tok_per_s:,.0f}", refresh=False)
        bar.update(1)

    def _track_budget(self, step: int, dt: float, times: _StepTimes, bar: Any) -> None:
        """Under a time budget: every few steps, re-fix ``max_steps`` from the recent median step time."""
        times.durations.append(dt)
        if step > times.first and (step - times.first) % _BUDGET_EVERY == 0:
            recent = sorted(times.durations[1:][-2 * _BUDGET_EVERY :])  # the first step warms up
            final = self.state.elapsed >= 30.0 * self.cfg.max_minutes
            self._fix_budget(step, recent[len(recent) // 2], times.other / len(times.durations), final)
            bar.total = self.cfg.max_steps

    def _after_step(self, step: int) -> dict[str, float] | None:
        """Evaluation and checkpoints on their schedules (and always at the last step)."""
        cfg, last = self.cfg, step == self.cfg.max_steps
        metrics = None
        t0 = time.perf_counter()
        if step % cfg.eval_every == 0 or last:
            metrics = self.run_eval(step)
        # during a run of non-finite steps the last checkpoint stays the last good one
        if (step % (cfg.checkpoint_every or cfg.eval_every) == 0 or last) and self.state.nan_streak == 0:
            self.save()
        self.state.elapsed += time.perf_counter() - t0
        if last and self.dist.is_main:
            self._plot()
        return metrics
