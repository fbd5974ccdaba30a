"""The training jobs of ``runyard demo``: ``manifest.toml`` and the trainers it names.

The trainers (``train_trees``, ``train_mlp``, ``train_softmax``) are ordinary training scripts
that the agent runs as ``python -m runyard.demo.train_<name>`` and that report through the SDK
(``runyard.start_run``). They train scikit-learn and NumPy models on data sets that ship with
scikit-learn, so nothing is downloaded. The command itself, which queues these jobs and draws
them live, is :mod:`runyard.cli.demo`. Importing this package imports nothing heavy.
"""

from __future__ import annotations
