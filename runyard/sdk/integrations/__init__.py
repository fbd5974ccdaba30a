"""Framework callbacks, one thin adapter per module; each imports its framework only there.

* :mod:`.huggingface` - ``RunyardCallback`` for the Hugging Face Transformers ``Trainer``
* :mod:`.lightning` - ``RunyardCallback`` for PyTorch Lightning
* :mod:`.keras` - ``RunyardCallback`` for Keras 3 (any backend)

Each either adopts a run you started (``RunyardCallback(run)``) or starts one when training
starts and finishes it when training ends (``RunyardCallback(name=..., config=...)``).
"""

from __future__ import annotations
