"""The storage interface, one module per concept (:class:`runyard.store.base.Store` composes
them): the values that cross it (:mod:`.rows`), the primitives of a write transaction
(:mod:`.transaction`), and the parts of a store, each an abstract base class implemented by
the mixin of the same concept in :mod:`runyard.store` (``metrics.py``, ``logs.py``...):
:mod:`.runs`, :mod:`.workers`, :mod:`.progress`, :mod:`.metrics`, :mod:`.logs`, :mod:`.blobs`,
:mod:`.catalog`, :mod:`.rules`, :mod:`.notifications`.
"""
