"""Hugging Face Transformers: ``trainer.add_callback(RunyardCallback())``.

Progress from ``TrainerState`` (``global_step`` of ``max_steps``, ``epoch``), metrics from
``on_log``, checkpoints from ``on_save`` (the ``checkpoint-N`` directory), a checkpoint
request (``run.checkpoint_requested``) sets ``control.should_save`` (the Trainer saves at the
end of that step, and ``on_save`` answers the request), and a stop request
(``run.should_stop``) sets ``control.should_training_stop`` after saving. Only the world's
process zero writes; every process sees both requests.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from runyard.sdk.integrations._common import RunHolder, numbers
from runyard.sdk.run import Run

#: Keys of the Trainer's log dicts that are bookkeeping, not metrics.
NOT_METRICS = ("epoch", "step", "total_flos")


class RunyardCallback(TrainerCallback):  # type: ignore[misc,unused-ignore]
    """Report a ``Trainer``'s progress to Runyard. ``run``: one you started; else
    ``start_options`` (name, project, config...) start one at ``on_train_begin``."""

    def __init__(self, run: Run | None = None, **start_options: Any) -> None:
        self._holder = RunHolder(run, start_options)

    @property
    def run(self) -> Run | None:
        return self._holder.run

    def on_train_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, **kwargs: Any) -> None:
        run = self._holder.begin(name=args.run_name or None, config=_config(args),
                                 all_ranks=False)
        if state.is_world_process_zero:
            run.progress(step=state.global_step, total_steps=state.max_steps or None,
                         total_epochs=float(args.num_train_epochs), phase="train")

    def on_step_end(self, args: TrainingArguments, state: TrainerState,
                    control: TrainerControl, **kwargs: Any) -> None:
        run = self._holder.run
        if run is None:
            return
        if state.is_world_process_zero:
            run.progress(step=state.global_step, epoch=state.epoch)
        if run.checkpoint_requested:
            control.should_save = True
        if run.should_stop:
            control.should_save = True
            control.should_training_stop = True

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        run = self._holder.run
        if run is not None and state.is_world_process_zero:
            run.log(numbers(logs, NOT_METRICS), step=state.global_step)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                **kwargs: Any) -> None:
        run = self._holder.run
        # Other processes' runs write nothing (only process zero's does); checkpoint() on
        # them answers their view of the request, so that they stop asking for saves.
        if run is not None and (state.is_world_process_zero or run.mode == "inactive"):
            path = os.path.join(args.output_dir or ".", f"checkpoint-{state.global_step}")
            run.checkpoint(path, step=state.global_step)

    def on_train_end(self, args: TrainingArguments, state: TrainerState,
                     control: TrainerControl, **kwargs: Any) -> None:
        run = self._holder.run
        if run is not None and state.is_world_process_zero:
            run.progress(step=state.global_step, epoch=state.epoch, phase="finalize")
        self._holder.end()


def _config(args: TrainingArguments) -> dict[str, Any]:
    keep = ("learning_rate", "per_device_train_batch_size", "num_train_epochs", "max_steps",
            "weight_decay", "warmup_steps", "seed", "gradient_accumulation_steps")
    return {k: getattr(args, k) for k in keep if hasattr(args, k)}
