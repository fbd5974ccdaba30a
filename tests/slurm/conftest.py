"""The Slurm tier: a real Slurm cluster on this host (tests/support/slurm.py), started once per
session, and tests that submit to it, with and without a Runyard server and agent.

Slurm missing or unable to start here skips this tier with the reason, except under ``CI``,
where it fails (as PostgreSQL does in tests/conftest.py): CI must not silently skip it.

Under pytest-xdist the tests of this tier are dealt into two ``xdist_group``s, so with
``--dist loadgroup`` two workers run them, each starting one cluster. Under any other
distribution each worker that gets a Slurm test starts a cluster of its own too: each has its own
name, ports, state and spool directories, so two can live side by side, and a file lock
keeps two bring-ups (and the shared ``munged``) from racing.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support.slurm import SlurmCluster, SlurmUnavailable

#: Held while a cluster starts or stops, across xdist workers (and concurrent sessions).
LOCK = Path(tempfile.gettempdir()) / "runyard-test-slurm.lock"
#: One file per process with a test cluster up (named by its pid): the shared ``munged`` is
#: stopped by the last one out, never under another cluster's feet.
USERS = Path(tempfile.gettempdir()) / "runyard-test-slurm.users"


#: How many xdist workers share this tier, each with a cluster of its own: on one worker the
#: tier (minutes of waiting on Slurm) would end long after the rest of the suite.
GROUPS = 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """This tier's tests go to :data:`GROUPS` xdist workers (--dist loadgroup), dealt in
    their order, whatever group another hook gave them: each worker starts one cluster."""
    here = Path(__file__).parent
    mine = [item for item in items if Path(str(item.path)).is_relative_to(here)]
    for n, item in enumerate(mine):
        item.own_markers[:] = [m for m in item.own_markers if m.name != "xdist_group"]
        item.add_marker(pytest.mark.xdist_group(f"slurm-{n % GROUPS}"))


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """One throwaway cluster for the session: ``n1`` and ``n2`` idle in partition ``debug``."""
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        with _locked():
            cluster.start()
            USERS.mkdir(exist_ok=True)
            (USERS / str(os.getpid())).write_text("munged" if cluster.started_munged else "")
    except SlurmUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Slurm is required in CI: {exc}")
        pytest.skip(f"Slurm cluster unavailable: {exc}")
    try:
        yield cluster
    finally:
        with _locked():
            mine = USERS / str(os.getpid())
            # Whether this process is the one to stop munged (it started it, or a cluster
            # that stopped earlier handed it over).
            ours = mine.exists() and mine.read_text() == "munged"
            mine.unlink(missing_ok=True)
            others = sorted(p for p in USERS.iterdir() if _alive(p.name))
            if ours and others:
                others[-1].write_text("munged")
            cluster.started_munged = ours
            cluster.stop(keep_munged=bool(others))


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


class _locked:
    """An exclusive lock on :data:`LOCK` (blocks until the other bring-up is done)."""

    def __enter__(self) -> None:
        self.fh = open(LOCK, "a")
        fcntl.flock(self.fh, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> SlurmCluster:
    """The session's cluster with ``SLURM_CONF`` set for this test's commands and children,
    and both nodes answering (a test that killed a node's slurmd restarts it)."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    slurm_cluster.wait_idle()
    return slurm_cluster
