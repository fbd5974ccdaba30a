"""A multi-layer perceptron (scikit-learn ``MLPClassifier``) on the digits that ship with
scikit-learn, trained one mini-batch at a time (``partial_fit``): one step is one batch, the
training loss is logged every step and the validation metrics every epoch, and a checkpoint
is saved every few epochs.

Config: ``hidden`` (layer sizes), ``lr``, ``epochs``, ``batch_size``, ``alpha``.
"""

from __future__ import annotations

import time

from runyard.demo import training

training.single_threaded()

import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.metrics import accuracy_score, log_loss  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import runyard  # noqa: E402

#: A checkpoint every this many epochs (and after the last); the agent uploads them at exit.
CHECKPOINT_EVERY = 5


def main() -> None:
    seed = training.parse_seed(__doc__ or "")
    with runyard.start_run(name="mlp", config={"hidden": [64], "lr": 0.01, "epochs": 10,
                                               "batch_size": 32}) as run:
        cfg = run.config
        epochs, batch = int(cfg["epochs"]), int(cfg["batch_size"])
        rng = np.random.default_rng(seed)
        x, y = load_digits(return_X_y=True)
        x_train, x_val, y_train, y_val = train_test_split(
            x, y, test_size=0.25, random_state=seed, stratify=y)
        scaler = StandardScaler().fit(x_train)
        x_train, x_val = scaler.transform(x_train), scaler.transform(x_val)
        batches = -(-len(x_train) // batch)
        run.progress(step=0, total_steps=epochs * batches, total_epochs=epochs, phase="setup")
        model = MLPClassifier(hidden_layer_sizes=tuple(int(h) for h in cfg["hidden"]),
                              learning_rate_init=float(cfg["lr"]),
                              alpha=float(cfg.get("alpha", 1e-4)), random_state=seed)
        classes = np.unique(y)
        started, step = time.monotonic(), 0
        for epoch in range(epochs):
            run.progress(phase="train", epoch=epoch)
            order = rng.permutation(len(x_train))
            for b in range(batches):
                if run.should_stop:
                    break
                idx = order[b * batch:(b + 1) * batch]
                model.partial_fit(x_train[idx], y_train[idx], classes=classes)
                step += 1
                run.log({"loss": float(model.loss_)}, step=step)
                run.progress(epoch=epoch + (b + 1) / batches,
                             message=f"epoch {epoch + 1}/{epochs}")
            if run.should_stop:  # a stop was requested: keep what we have and leave
                break
            proba = model.predict_proba(x_val)
            run.log({"val_loss": log_loss(y_val, proba, labels=classes),
                     "val_accuracy": accuracy_score(y_val, np.argmax(proba, axis=1))},
                    step=step)
            if run.checkpoint_dir is not None and (
                    (epoch + 1) % CHECKPOINT_EVERY == 0 or epoch + 1 == epochs):
                run.progress(phase="checkpoint")
                path = training.save_pickle(model, run.checkpoint_dir / f"epoch-{epoch + 1}.pkl")
                run.checkpoint(path, step=step)
        run.progress(phase="finalize")
        out = training.output_dir(run.artifact_dir)
        training.save_pickle({"scaler": scaler, "model": model}, out / "model.pkl")
        training.save_json({
            "model": "MLPClassifier", "hidden": list(cfg["hidden"]), "seed": seed,
            "steps": step, "val_accuracy": float(accuracy_score(y_val, model.predict(x_val))),
            "seconds": round(time.monotonic() - started, 2)}, out / "result.json")


if __name__ == "__main__":
    main()
