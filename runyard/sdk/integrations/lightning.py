"""PyTorch Lightning: ``Trainer(callbacks=[RunyardCallback()])``.

Total steps from ``trainer.estimated_stepping_batches``; progress and metrics
(``trainer.callback_metrics``) after each batch, every ``log_every_n_steps``; validation
metrics after validation; checkpoints as ``ModelCheckpoint`` writes them; a checkpoint request
makes ``trainer.save_checkpoint`` write ``requested-step=N.ckpt`` into the run's checkpoint
directory, registered at once; a stop request sets ``trainer.should_stop``. Only global rank
zero writes. Needs the ``lightning`` package (2.x).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from runyard.sdk.integrations._common import RunHolder, numbers
from runyard.sdk.run import Run


class RunyardCallback(Callback):  # type: ignore[misc,unused-ignore]
    """Report a Lightning ``Trainer``'s progress to Runyard (see the module docstring)."""

    def __init__(self, run: Run | None = None, **start_options: Any) -> None:
        self._holder = RunHolder(run, start_options)
        self._checkpoints: set[str] = set()
        # callback_metrics keeps validation values between validations: they are logged
        # once, after each validation, not again with every training batch.
        self._eval_keys: set[str] = set()
        self._train_keys: set[str] = set()

    @property
    def run(self) -> Run | None:
        return self._holder.run

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        run = self._holder.begin(config=dict(getattr(pl_module, "hparams", {}) or {}))
        if trainer.is_global_zero:
            total = trainer.estimated_stepping_batches
            run.progress(step=trainer.global_step,
                         total_steps=int(total) if total != float("inf") else None,
                         total_epochs=trainer.max_epochs if trainer.max_epochs and
                         trainer.max_epochs > 0 else None, phase="train")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        run = self._holder.run
        if run is None:
            return
        if trainer.is_global_zero:
            step = trainer.global_step
            batches = trainer.num_training_batches
            epoch = trainer.current_epoch + (
                (batch_idx + 1) / batches if isinstance(batches, int) and batches else 0)
            run.progress(step=step, epoch=epoch)
            if step % max(1, int(getattr(trainer, "log_every_n_steps", 1) or 1)) == 0:
                metrics = numbers(trainer.callback_metrics, tuple(self._eval_keys))
                self._train_keys |= set(metrics)
                run.log(metrics, step=step)
            self._note_checkpoints(trainer, run)
        if self._checkpoint_asked(trainer, run):
            # Every process calls it (a collective under DDP); global rank zero writes.
            path = Path(run.checkpoint_dir or trainer.default_root_dir) / \
                f"requested-step={trainer.global_step}.ckpt"
            trainer.save_checkpoint(path)
            if trainer.is_global_zero or run.mode == "inactive":  # the others only answer
                run.checkpoint(path, step=trainer.global_step)
        if run.should_stop:
            trainer.should_stop = True

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        run = self._holder.run
        if run is not None and trainer.is_global_zero and not trainer.sanity_checking:
            self._eval_keys |= set(trainer.callback_metrics) - self._train_keys
            metrics = numbers(trainer.callback_metrics)
            run.log({k: v for k, v in metrics.items() if k in self._eval_keys},
                    step=trainer.global_step)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        run = self._holder.run
        if run is not None and trainer.is_global_zero:
            self._note_checkpoints(trainer, run)
            run.progress(step=trainer.global_step, phase="finalize")
        self._holder.end()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule,
                     exception: BaseException) -> None:
        self._holder.end(error=exception)

    @staticmethod
    def _checkpoint_asked(trainer: Trainer, run: Run) -> bool:
        """Whether to save now. Under several processes they decide together (any of them
        asked), every ``log_every_n_steps``, since saving is collective and each process
        sees the request at its own moment."""
        asked = run.checkpoint_requested
        if trainer.world_size <= 1:
            return asked
        if trainer.global_step % max(1, int(getattr(trainer, "log_every_n_steps", 1) or 1)):
            return False
        return bool(trainer.strategy.reduce_boolean_decision(asked, all=False))

    def _note_checkpoints(self, trainer: Trainer, run: Run) -> None:
        # ModelCheckpoint runs after every other callback, so its file shows up one hook later.
        for cb in trainer.checkpoint_callbacks:
            for path in (getattr(cb, "last_model_path", ""), getattr(cb, "best_model_path", "")):
                if path and path not in self._checkpoints:
                    self._checkpoints.add(path)
                    run.checkpoint(path, step=trainer.global_step)
