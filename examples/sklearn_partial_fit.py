"""scikit-learn's ``partial_fit`` loop, one epoch at a time, tracked with Runyard.

    python examples/sklearn_partial_fit.py --epochs 20
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split

import runyard


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    x, y = make_classification(n_samples=4000, n_features=20, n_informative=8, random_state=0)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=0)
    batches = np.array_split(np.arange(len(x_train)), 10)
    config = {"alpha": 1e-4, "epochs": args.epochs}
    with runyard.start_run(name="sgd-classifier", project="examples", config=config,
                           total_steps=args.epochs * len(batches),
                           total_epochs=args.epochs) as run:
        model = SGDClassifier(loss="log_loss", alpha=run.config["alpha"], random_state=0)
        step = 0
        for epoch in range(args.epochs):
            for idx in batches:
                model.partial_fit(x_train[idx], y_train[idx], classes=[0, 1])
                step += 1
            run.log({"train_acc": model.score(x_train, y_train),
                     "val_acc": model.score(x_val, y_val)}, step=step)
            run.progress(step=step, epoch=epoch + 1, phase="train")
            if run.should_stop:
                break
    print(f"run {run.run_id} {run.status} ({run.mode} mode)")


if __name__ == "__main__":
    main()
