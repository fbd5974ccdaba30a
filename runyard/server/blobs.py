"""Blob plumbing between HTTP bodies, the blob store and the database index."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Sequence

import anyio
import anyio.from_thread
import anyio.to_thread

from runyard import errors
from runyard.artifacts import BlobInfo
from runyard.server.state import ServerState

log = logging.getLogger(__name__)


async def put_stream(state: ServerState, body: AsyncIterator[bytes], expected_sha256: str,
                     max_size: int) -> BlobInfo:
    """Stream a request body into the blob store chunk by chunk (never whole in memory).

    The blob store's ``put`` is synchronous, so it runs in a worker thread that pulls each
    chunk from the event loop; it verifies the digest and the limit and keeps nothing when
    either fails.
    """

    async def next_chunk() -> bytes:
        return await body.__anext__()

    def chunks() -> Iterator[bytes]:
        while True:
            try:
                chunk: bytes = anyio.from_thread.run(next_chunk)
            except StopAsyncIteration:
                return
            if chunk:
                yield chunk

    def put() -> BlobInfo:
        return state.blobs.put(chunks(), expected_sha256=expected_sha256, max_size=max_size)

    info = await anyio.to_thread.run_sync(put)
    state.metrics.uploaded_bytes.inc(info.size)
    return info


def remove_blobs(state: ServerState, shas: Sequence[str]) -> list[str]:
    """Delete blobs nothing refers to any more: from the index, then from the blob store.

    ``shas`` are candidates; the index is asked again so a blob that another upload just
    referenced is kept.
    """
    if not shas:
        return []
    orphans = state.store.unreferenced_blob_shas(list(shas))
    for sha in orphans:
        try:
            state.store.delete_blob(sha)
        except errors.Conflict:
            continue  # referenced again meanwhile (an upload of the same content)
        try:
            state.blobs.delete(sha)
        except errors.RunyardError as exc:  # the index is the truth; a leftover file is harmless
            log.warning("could not delete blob %s: %s", sha, exc)
    return list(orphans)
