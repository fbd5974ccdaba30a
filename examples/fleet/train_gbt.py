"""Gradient-boosted trees (scikit-learn HistGradientBoostingClassifier) on a bundled data set.

Boosting grows in stages (``warm_start``), so progress is reported per stage of trees.
Config keys: see the ``gbt`` blueprint's schema in fleet.toml.
"""

from __future__ import annotations

import time

import numpy as np
from _progress import Reporter, load_config, write_result
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split

DATASETS = {"digits": load_digits, "breast_cancer": load_breast_cancer}


def main() -> None:
    config, seed = load_config(__doc__ or "")
    trees = int(config.get("max_iter", 100))
    stage = int(config.get("trees_per_step", 10))
    steps = -(-trees // stage)
    progress = Reporter(total_steps=steps, units="stages")
    progress.update(phase="data", step=0, force=True, message="loading data")

    x, y = DATASETS[config.get("dataset", "breast_cancer")](return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=seed,
                                                      stratify=y)
    model = HistGradientBoostingClassifier(
        learning_rate=float(config.get("learning_rate", 0.1)),
        max_leaf_nodes=int(config.get("max_leaf_nodes", 31)),
        l2_regularization=float(config.get("l2_regularization", 0.0)),
        early_stopping=False, warm_start=True, random_state=seed, max_iter=0,
    )
    started = time.monotonic()
    progress.update(phase="train", step=0, force=True)
    for step in range(1, steps + 1):
        if progress.should_stop:
            break
        model.set_params(max_iter=min(step * stage, trees))
        model.fit(x_train, y_train)
        proba = model.predict_proba(x_val)
        progress.update(step=step, val_loss=log_loss(y_val, proba, labels=model.classes_),
                        val_accuracy=accuracy_score(y_val, np.argmax(proba, axis=1)),
                        message=f"{model.n_iter_} trees")
    progress.update(phase="finalize", force=True)
    write_result("result.json", {"model": "gbt", "seed": seed, "config": config,
                                 "trees": int(model.n_iter_), "metrics": progress.metrics,
                                 "seconds": round(time.monotonic() - started, 3)})
    progress.update(force=True, message="done")


if __name__ == "__main__":
    main()
