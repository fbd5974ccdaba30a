"""What the demo trainers share: one thread each, the seed, data splits, saving results.

Each trainer is run by the agent as ``{python} -m runyard.demo.train_<name> --seed {seed}``
and reads its validated config through the SDK (``run.config``).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
from pathlib import Path
from typing import Any

#: BLAS and OpenMP pools would each take every core; the demo runs several jobs at once.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def single_threaded() -> None:
    """Call before importing NumPy or scikit-learn."""
    for name in THREAD_VARS:
        os.environ.setdefault(name, "1")


def parse_seed(description: str) -> int:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seed", type=int, default=0)
    return int(parser.parse_args().seed)


def output_dir(path: Path | None) -> Path:
    """The run's artifact directory (``RUNYARD_ARTIFACT_DIR``), or ``./artifacts``."""
    out = path or Path("artifacts")
    out.mkdir(parents=True, exist_ok=True)
    return out


def save_pickle(obj: Any, path: Path) -> Path:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def save_json(data: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
