"""``runyard sync``: local runs (embedded store, local-run files) uploaded to a server.

:mod:`.records` reads local runs into one record shape, :mod:`.uploader` sends them,
:mod:`.importer` is the server side. Uploads are idempotent: a run keeps its id, the server
creates it once, and metric points are upserts, so syncing twice creates nothing new.
"""

from __future__ import annotations
