"""Framework callbacks with the real frameworks on CPU: tiny randomly initialised models built
from a config, synthetic data, no hub download. Runs go to the embedded store (a real SQLite
file), read back through the store; a stop or a checkpoint is requested through the queue, as
the CLI does."""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KERAS_BACKEND", "torch")  # the backend that installs here (CPU torch)

if importlib.util.find_spec("torch") is None:
    pytest.skip("torch is not installed", allow_module_level=True)
#: Imported by the first test here, not at collection: every xdist worker collects this module,
#: and only the one that runs it (its xdist group) should pay for importing torch.
torch: Any = None

from runyard.queue import Queue  # noqa: E402
from runyard.sdk import settings  # noqa: E402
from runyard.store import default_url, open_store  # noqa: E402

pytestmark = [
    # The frameworks warn about CPU-only runs, few data-loader workers and the like.
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    # On one xdist worker: each framework's import costs seconds of CPU, paid once so.
    pytest.mark.xdist_group("sdk-integrations"),
]


@pytest.fixture(autouse=True)
def _fast_heartbeat() -> Iterator[None]:
    global torch
    import torch as imported

    torch = imported
    settings.configure(heartbeat_interval_s=0.05)
    torch.manual_seed(0)
    yield
    settings.reset()


def data_dir() -> Path:
    return Path(os.environ["RUNYARD_DATA_DIR"])


def stored(run_id: str) -> dict[str, Any]:
    store = open_store(default_url(data_dir()))
    try:
        run = store.get_run(run_id)
        assert run is not None
        tags = {t["tag"]: t for t in store.metric_tags(run_id)}
        return {"run": run, "tags": tags, "checkpoints": store.list_checkpoints(run_id)}
    finally:
        store.close()


def request_stop(run_id: str) -> None:
    """What ``runyard stop`` does, through the embedded store's queue."""
    store = open_store(default_url(data_dir()))
    try:
        Queue(store).stop(run_id, grace_s=30, actor="test")
    finally:
        store.close()


def request_checkpoint(run_id: str) -> None:
    """What ``runyard checkpoint`` does, through the embedded store's queue."""
    store = open_store(default_url(data_dir()))
    try:
        Queue(store).request_checkpoint(run_id, actor="test")
    finally:
        store.close()


def until(what: str, cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.01)


class CheckpointAsker:
    """Asks for a checkpoint at one step and waits until the run sees the request (the SDK's
    heartbeat brings it back); later, waits until the registered checkpoint cleared it."""

    def __init__(self, ask_at: int, cleared_by: int) -> None:
        self.ask_at, self.cleared_by = ask_at, cleared_by
        self.run: Any = None

    def step(self, step: int) -> None:
        if step == self.ask_at:
            request_checkpoint(self.run.run_id)
            until("the request reaches the loop", lambda: self.run.checkpoint_requested)
        elif step == self.cleared_by:
            assert not self.run.checkpoint_requested  # answered by the save
            until("the request is cleared", lambda: stored(self.run.run_id)["run"][
                "checkpoint_requested_at"] is None)


# --------------------------------------------------------------------------- Transformers


def hf_trainer(tmp_path: Path, max_steps: int, extra: list[Any]) -> Any:
    transformers = pytest.importorskip("transformers")
    from runyard.sdk.integrations.huggingface import RunyardCallback

    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64,
                                     n_positions=16, bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config)
    ids = torch.randint(0, 64, (64, 16))
    data = [{"input_ids": row, "labels": row} for row in ids]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), max_steps=max_steps, per_device_train_batch_size=4,
        logging_steps=2, save_steps=6, save_strategy="steps", report_to=[], use_cpu=True,
        disable_tqdm=True, run_name="tiny-gpt2", dataloader_num_workers=0, learning_rate=1e-3)
    callback = RunyardCallback(project="integrations")
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data,
                                   callbacks=[callback, *extra])
    return trainer, callback


def test_transformers_trainer_callback(tmp_path: Path) -> None:
    trainer, callback = hf_trainer(tmp_path, 12, [])
    trainer.train()
    got = stored(callback.run.run_id)
    run = got["run"]
    assert run["status"] == "completed" and run["name"] == "tiny-gpt2"
    assert run["progress"]["step"] == 12 and run["progress"]["total_steps"] == 12
    assert run["progress"]["epoch"] > 0 and run["config"]["max_steps"] == 12
    assert got["tags"]["loss"]["count"] == 6  # on_log every 2 steps
    assert "learning_rate" in got["tags"] or "grad_norm" in got["tags"]
    ck = [(c["step"], c["status"]) for c in got["checkpoints"]]
    assert ck == [(6, "complete"), (12, "complete")]  # checkpoint-N directories, uploaded


def test_transformers_stop_request_stops_training(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")

    class StopAtThree(transformers.TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.holder: Any = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == 3:
                request_stop(self.holder.run.run_id)
                import time

                time.sleep(0.3)  # the SDK's heartbeat brings the stop back

    stopper = StopAtThree()
    trainer, callback = hf_trainer(tmp_path, 1000, [stopper])
    stopper.holder = callback
    trainer.train()
    assert 3 <= trainer.state.global_step < 20
    got = stored(callback.run.run_id)
    assert got["run"]["status"] == "stopped"


def test_transformers_checkpoint_request_saves_at_the_next_step(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    asker = CheckpointAsker(ask_at=3, cleared_by=8)

    class Ask(transformers.TrainerCallback):  # type: ignore[misc]
        holder: Any = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            asker.run = self.holder.run
            asker.step(state.global_step)

    ask = Ask()
    trainer, callback = hf_trainer(tmp_path, 12, [ask])
    ask.holder = callback
    trainer.train()
    got = stored(callback.run.run_id)
    assert got["run"]["status"] == "completed"
    # Asked after step 3: saved at step 4 (checkpoint-4), besides the save_steps ones.
    assert [(c["step"], c["status"]) for c in got["checkpoints"]] == [
        (4, "complete"), (6, "complete"), (12, "complete")]
    assert (tmp_path / "hf" / "checkpoint-4").is_dir()


# --------------------------------------------------------------------------- Lightning


def lightning_module() -> Any:
    pl = pytest.importorskip("lightning.pytorch")

    class Tiny(pl.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.save_hyperparameters({"hidden": 4})
            self.net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(),
                                           torch.nn.Linear(4, 1))

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.05)

    return pl, Tiny()


def loaders() -> tuple[Any, Any]:
    x = torch.randn(64, 3)
    y = x.sum(dim=1, keepdim=True)
    data = torch.utils.data.TensorDataset(x, y)
    return (torch.utils.data.DataLoader(data, batch_size=8),
            torch.utils.data.DataLoader(data, batch_size=32))


def lightning_trainer(pl: Any, tmp_path: Path, epochs: int, extra: list[Any]) -> Any:
    from runyard.sdk.integrations.lightning import RunyardCallback

    callback = RunyardCallback(name="tiny-lightning")
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         log_every_n_steps=1, default_root_dir=str(tmp_path),
                         callbacks=[callback, *extra])
    return trainer, callback


def test_lightning_callback(tmp_path: Path) -> None:
    pl, model = lightning_module()
    trainer, callback = lightning_trainer(pl, tmp_path, 2, [])
    train, val = loaders()
    trainer.fit(model, train, val)
    got = stored(callback.run.run_id)
    run = got["run"]
    assert run["status"] == "completed" and run["config"] == {"hidden": 4}
    assert run["progress"]["total_steps"] == 16 and run["progress"]["step"] == 16
    assert run["progress"]["total_epochs"] == 2
    assert got["tags"]["train_loss"]["count"] >= 10 and got["tags"]["val_loss"]["count"] == 2
    # ModelCheckpoint (top 1) deletes the epoch-0 file once epoch 1 is better; the last stays.
    assert got["checkpoints"][-1]["status"] == "complete"
    assert got["checkpoints"][-1]["name"].startswith("checkpoints/epoch-1")


def test_lightning_stop_request_sets_should_stop(tmp_path: Path) -> None:
    pl, model = lightning_module()

    class StopAtThree(pl.Callback):  # type: ignore[misc]
        holder: Any = None

        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            if trainer.global_step == 3:
                request_stop(self.holder.run.run_id)
                import time

                time.sleep(0.3)

    stopper = StopAtThree()
    trainer, callback = lightning_trainer(pl, tmp_path, 1000, [stopper])
    stopper.holder = callback
    train, val = loaders()
    trainer.fit(model, train, val)
    assert trainer.current_epoch < 5
    assert stored(callback.run.run_id)["run"]["status"] == "stopped"


def test_lightning_checkpoint_request_saves_and_registers(tmp_path: Path) -> None:
    pl, model = lightning_module()
    asker = CheckpointAsker(ask_at=3, cleared_by=10)

    class Ask(pl.Callback):  # type: ignore[misc]
        holder: Any = None

        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            asker.run = self.holder.run
            asker.step(trainer.global_step)

    ask = Ask()
    trainer, callback = lightning_trainer(pl, tmp_path, 2, [ask])
    ask.holder = callback
    train, val = loaders()
    trainer.fit(model, train, val)
    got = stored(callback.run.run_id)
    assert got["run"]["status"] == "completed"
    asked = [c for c in got["checkpoints"] if c["name"].startswith("checkpoints/requested-")]
    assert [(c["step"], c["status"]) for c in asked] == [(4, "complete")]
    saved = Path(callback.run.checkpoint_dir) / "requested-step=4.ckpt"
    assert torch.load(saved, weights_only=False)["global_step"] == 4  # a real Lightning file


# --------------------------------------------------------------------------- Keras


def test_keras_callback() -> None:
    keras = pytest.importorskip("keras")
    from runyard.sdk.integrations.keras import RunyardCallback

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = torch.randn(64, 3).numpy()
    y = x.sum(axis=1, keepdims=True)
    callback = RunyardCallback(name="tiny-keras")
    model.fit(x, y, epochs=2, batch_size=8, validation_split=0.25, verbose=0,
              callbacks=[callback])
    got = stored(callback.run.run_id)
    run = got["run"]
    assert run["status"] == "completed"
    assert run["progress"]["total_steps"] == 12 and run["progress"]["step"] == 12
    assert got["tags"]["loss"]["count"] == 12 and got["tags"]["val_loss"]["count"] == 2
    assert got["tags"]["val_loss"]["last_step"] == 12


def test_keras_stop_request_stops_fit() -> None:
    keras = pytest.importorskip("keras")
    from runyard.sdk.integrations.keras import RunyardCallback

    callback = RunyardCallback(name="keras-stop")

    class StopAtThree(keras.callbacks.Callback):  # type: ignore[misc]
        batches = 0

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            StopAtThree.batches += 1
            if StopAtThree.batches == 3:
                assert callback.run is not None
                request_stop(callback.run.run_id)
                import time

                time.sleep(0.3)

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = torch.randn(64, 3).numpy()
    model.fit(x, x.sum(axis=1, keepdims=True), epochs=500, batch_size=8, verbose=0,
              callbacks=[callback, StopAtThree()])
    assert StopAtThree.batches < 40  # stopped within a few batches, not 4,000
    assert stored(callback.run.run_id)["run"]["status"] == "stopped"


def test_keras_checkpoint_request_saves_the_model() -> None:
    keras = pytest.importorskip("keras")
    from runyard.sdk.integrations.keras import RunyardCallback

    callback = RunyardCallback(name="keras-asked")
    asker = CheckpointAsker(ask_at=3, cleared_by=8)

    class Ask(keras.callbacks.Callback):  # type: ignore[misc]
        batches = 0

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            Ask.batches += 1
            asker.run = callback.run
            asker.step(Ask.batches)

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = torch.randn(64, 3).numpy()
    model.fit(x, x.sum(axis=1, keepdims=True), epochs=2, batch_size=8, verbose=0,
              callbacks=[callback, Ask()])
    got = stored(callback.run.run_id)
    assert got["run"]["status"] == "completed"
    assert [(c["step"], c["status"], c["name"]) for c in got["checkpoints"]] == [
        (4, "complete", "checkpoints/requested-step-4.keras")]
    loaded = keras.saving.load_model(Path(callback.run.checkpoint_dir) /
                                     "requested-step-4.keras")
    assert loaded.count_params() == model.count_params()
