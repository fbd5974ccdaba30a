"""Gradient-boosted trees (scikit-learn ``HistGradientBoostingClassifier``) on a data set that
ships with scikit-learn, grown a few trees at a time (``warm_start``) so that progress and
validation metrics are reported after each stage.

Config: ``dataset`` (``digits`` or ``breast_cancer``), ``max_iter``, ``trees_per_step``,
``learning_rate``, ``max_leaf_nodes``.
"""

from __future__ import annotations

import time

from runyard.demo import training

training.single_threaded()

import numpy as np  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.metrics import accuracy_score, log_loss  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import runyard  # noqa: E402

DATASETS = {"digits": load_digits, "breast_cancer": load_breast_cancer}


def main() -> None:
    seed = training.parse_seed(__doc__ or "")
    with runyard.start_run(name="trees", config={"dataset": "digits", "max_iter": 100,
                                                 "trees_per_step": 5}) as run:
        cfg = run.config
        total, per_step = int(cfg["max_iter"]), int(cfg["trees_per_step"])
        steps = -(-total // per_step)
        run.progress(step=0, total_steps=steps, phase="data", message="loading data")
        x, y = DATASETS[str(cfg["dataset"])](return_X_y=True)
        x_train, x_val, y_train, y_val = train_test_split(
            x, y, test_size=0.25, random_state=seed, stratify=y)
        model = HistGradientBoostingClassifier(
            learning_rate=float(cfg.get("learning_rate", 0.1)),
            max_leaf_nodes=int(cfg.get("max_leaf_nodes", 31)), early_stopping=False,
            warm_start=True, random_state=seed, max_iter=0)
        run.progress(phase="train")
        started = time.monotonic()
        for step in range(1, steps + 1):
            if run.should_stop:
                break
            model.set_params(max_iter=min(step * per_step, total))
            model.fit(x_train, y_train)
            proba = model.predict_proba(x_val)
            run.log({"val_loss": log_loss(y_val, proba, labels=model.classes_),
                     "val_accuracy": accuracy_score(y_val, np.argmax(proba, axis=1))},
                    step=step)
            run.progress(message=f"{model.n_iter_} boosting rounds")
        run.progress(phase="finalize")
        out = training.output_dir(run.artifact_dir)
        training.save_pickle(model, out / "model.pkl")
        proba = model.predict_proba(x_val)
        training.save_json({
            "model": "HistGradientBoostingClassifier", "dataset": cfg["dataset"],
            "seed": seed, "rounds": int(model.n_iter_),
            "val_accuracy": float(accuracy_score(y_val, np.argmax(proba, axis=1))),
            "seconds": round(time.monotonic() - started, 2)}, out / "result.json")


if __name__ == "__main__":
    main()
