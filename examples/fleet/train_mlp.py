"""A multi-layer perceptron (scikit-learn MLPClassifier, trained with partial_fit) on digits.

One step is one mini-batch, so the progress bar moves smoothly; metrics are logged per epoch.
Config keys: see the ``mlp`` blueprint's schema in fleet.toml.
"""

from __future__ import annotations

import time

import numpy as np
from _progress import Reporter, load_config, write_result
from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler


def main() -> None:
    config, seed = load_config(__doc__ or "")
    epochs = int(config.get("epochs", 10))
    batch = int(config.get("batch_size", 64))
    rng = np.random.default_rng(seed)

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=seed,
                                                      stratify=y)
    scaler = StandardScaler().fit(x_train)
    x_train, x_val = scaler.transform(x_train), scaler.transform(x_val)
    batches = -(-len(x_train) // batch)
    progress = Reporter(total_steps=epochs * batches)
    progress.update(phase="setup", step=0, force=True)

    hidden = tuple(int(h) for h in config.get("hidden", [64]))
    model = MLPClassifier(hidden_layer_sizes=hidden, learning_rate_init=float(config["lr"]),
                          alpha=float(config.get("alpha", 1e-4)), random_state=seed)
    classes = np.unique(y)
    started = time.monotonic()
    step = 0
    for epoch in range(epochs):
        progress.update(phase="train")
        order = rng.permutation(len(x_train))
        for b in range(batches):
            if progress.should_stop:
                break
            idx = order[b * batch:(b + 1) * batch]
            model.partial_fit(x_train[idx], y_train[idx], classes=classes)
            step += 1
            progress.update(step=step, message=f"epoch {epoch + 1}/{epochs}")
        if progress.should_stop:  # a stop was requested: keep what we have
            break
        proba = model.predict_proba(x_val)
        progress.update(phase="eval", train_loss=float(model.loss_),
                        val_loss=log_loss(y_val, proba, labels=classes),
                        val_accuracy=accuracy_score(y_val, np.argmax(proba, axis=1)))
    progress.update(phase="finalize", force=True)
    write_result("result.json", {"model": "mlp", "seed": seed, "config": config,
                                 "metrics": progress.metrics, "steps": step,
                                 "seconds": round(time.monotonic() - started, 3)})
    progress.update(force=True, message="done")


if __name__ == "__main__":
    main()
