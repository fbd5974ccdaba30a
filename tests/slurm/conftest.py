"""The Slurm tier: a real Slurm cluster on this host (tests/support/slurm.py), started once per
session, and tests that submit to it, with and without a Runyard server and agent.

Slurm missing or unable to start here skips this tier with the reason, except under ``CI``,
where it fails (as PostgreSQL does in tests/conftest.py): CI must not silently skip it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ..support.slurm import SlurmCluster, SlurmUnavailable


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """One throwaway cluster for the session: ``n1`` and ``n2`` idle in partition ``debug``."""
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except SlurmUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Slurm is required in CI: {exc}")
        pytest.skip(f"Slurm cluster unavailable: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> SlurmCluster:
    """The session's cluster with ``SLURM_CONF`` set for this test's commands and children,
    and both nodes answering (a test that killed a node's slurmd restarts it)."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    slurm_cluster.wait_idle()
    return slurm_cluster
