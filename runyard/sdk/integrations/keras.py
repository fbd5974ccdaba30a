"""Keras 3 (any backend): ``model.fit(..., callbacks=[RunyardCallback()])``.

Total steps from ``epochs * steps`` (``self.params``); progress and batch metrics after each
batch, epoch (and validation) metrics after each epoch; a checkpoint request saves the model
(``model.save``, ``requested-step-N.keras`` in the run's checkpoint directory) and registers
it; a stop request sets ``model.stop_training``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras

from runyard.sdk.integrations._common import RunHolder, numbers
from runyard.sdk.run import Run


class RunyardCallback(keras.callbacks.Callback):  # type: ignore[misc,unused-ignore]
    """Report ``model.fit`` progress to Runyard (see the module docstring)."""

    def __init__(self, run: Run | None = None, **start_options: Any) -> None:
        super().__init__()
        self._holder = RunHolder(run, start_options)
        self._step = 0
        self._epoch = 0
        self._steps_per_epoch: int | None = None

    @property
    def run(self) -> Run | None:
        return self._holder.run

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        run = self._holder.begin()
        params = self.params or {}
        epochs, steps = params.get("epochs"), params.get("steps")
        per = steps if isinstance(steps, int) and steps > 0 else None
        self._steps_per_epoch = per
        total = epochs * per if per is not None and isinstance(epochs, int) else None
        run.progress(step=0, total_steps=total, total_epochs=epochs, phase="train")

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        run = self._holder.run
        if run is None:
            return
        self._step += 1
        per = self._steps_per_epoch
        epoch = self._epoch + ((batch + 1) / per if per else 0)
        run.progress(step=self._step, epoch=epoch)
        run.log(numbers(logs), step=self._step)
        if run.checkpoint_requested:
            path = Path(run.checkpoint_dir or ".") / f"requested-step-{self._step}.keras"
            self.model.save(path)
            run.checkpoint(path, step=self._step)
        if run.should_stop:
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        run = self._holder.run
        if run is not None:
            run.log(numbers(logs), step=self._step)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        run = self._holder.run
        if run is not None:
            run.progress(step=self._step, phase="finalize")
        self._holder.end()
