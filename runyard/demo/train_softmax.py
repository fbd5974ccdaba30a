"""Multinomial logistic regression in plain NumPy (softmax, cross-entropy, mini-batch SGD with
momentum and weight decay, gradients by hand) on the wine data that ships with scikit-learn,
with random Fourier features to give the linear model something to learn.

Config: ``features`` (random Fourier features), ``lr``, ``epochs``, ``batch_size``,
``weight_decay``.
"""

from __future__ import annotations

import time

from runyard.demo import training

training.single_threaded()

import numpy as np  # noqa: E402
from sklearn.datasets import load_wine  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import runyard  # noqa: E402


def softmax_loss(w: np.ndarray, x: np.ndarray, y: np.ndarray, decay: float
                 ) -> tuple[float, np.ndarray]:
    """Mean cross-entropy plus L2 penalty, and its gradient with respect to ``w``."""
    logits = x @ w
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    n = len(y)
    loss = float(-np.log(probs[np.arange(n), y] + 1e-12).mean() + 0.5 * decay * (w * w).sum())
    probs[np.arange(n), y] -= 1.0
    return loss, x.T @ probs / n + decay * w


def main() -> None:
    seed = training.parse_seed(__doc__ or "")
    with runyard.start_run(name="softmax", config={"features": 512, "lr": 0.1, "epochs": 60,
                                                   "batch_size": 16}) as run:
        cfg = run.config
        rng = np.random.default_rng(seed)
        x, y = load_wine(return_X_y=True)
        x_train, x_val, y_train, y_val = train_test_split(
            x, y, test_size=0.3, random_state=seed, stratify=y)
        mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-9
        proj = rng.normal(0.0, 0.5, size=(x.shape[1], int(cfg["features"])))
        phase = rng.uniform(0.0, 2 * np.pi, size=int(cfg["features"]))

        def features(a: np.ndarray) -> np.ndarray:
            z = np.cos(((a - mean) / std) @ proj + phase)
            return np.hstack([z, np.ones((len(a), 1))])  # plus a bias column

        f_train, f_val = features(x_train), features(x_val)
        classes = int(y.max()) + 1
        w = np.zeros((f_train.shape[1], classes))
        velocity = np.zeros_like(w)
        epochs, batch = int(cfg["epochs"]), int(cfg["batch_size"])
        lr, decay = float(cfg["lr"]), float(cfg.get("weight_decay", 1e-4))
        batches = -(-len(f_train) // batch)
        run.progress(step=0, total_steps=epochs * batches, total_epochs=epochs, phase="train")
        started, step = time.monotonic(), 0
        for epoch in range(epochs):
            order = rng.permutation(len(f_train))
            for b in range(batches):
                if run.should_stop:
                    break
                idx = order[b * batch:(b + 1) * batch]
                loss, grad = softmax_loss(w, f_train[idx], y_train[idx], decay)
                velocity = 0.9 * velocity - lr * grad
                w += velocity
                step += 1
                run.log({"loss": loss}, step=step)
                run.progress(epoch=epoch + (b + 1) / batches,
                             message=f"epoch {epoch + 1}/{epochs}")
            if run.should_stop:
                break
            val_loss, _ = softmax_loss(w, f_val, y_val, 0.0)
            accuracy = float(((f_val @ w).argmax(axis=1) == y_val).mean())
            run.log({"val_loss": val_loss, "val_accuracy": accuracy}, step=step)
        run.progress(phase="finalize")
        out = training.output_dir(run.artifact_dir)
        np.savez(out / "weights.npz", w=w, projection=proj, phase=phase, mean=mean, std=std)
        training.save_json({
            "model": "softmax regression (NumPy)", "dataset": "wine", "seed": seed,
            "steps": step, "val_accuracy": float(((f_val @ w).argmax(axis=1) == y_val).mean()),
            "seconds": round(time.monotonic() - started, 2)}, out / "result.json")


if __name__ == "__main__":
    main()
