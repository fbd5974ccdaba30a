"""``runyard demo``: a local server and agent, and real training jobs to watch.

:mod:`runyard.demo.jobs` queues the jobs of ``manifest.toml`` (shipped in this package) and
:mod:`runyard.demo.board` draws them live; the trainers (``train_trees``, ``train_mlp``,
``train_softmax``) are ordinary training scripts that report through the SDK
(``runyard.start_run``). They train scikit-learn and NumPy models on data sets that ship
with scikit-learn, so nothing is downloaded. Importing this package imports nothing heavy.
"""

from __future__ import annotations
