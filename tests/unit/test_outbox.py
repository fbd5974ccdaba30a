"""The outbox the agent and the SDK's HTTP mode share: spool while the server is away,
replay in order, nothing lost, nothing sent twice."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from runyard import errors
from runyard.outbox import FixedDelay, Outbox, Spool


class FlakyServer:
    """Records what was delivered; ``down`` makes every call a transport error."""

    def __init__(self) -> None:
        self.down = False
        self.got: list[int] = []
        self.refuse: set[int] = set()
        self.conflict = False

    def send(self, entry: dict[str, Any]) -> None:
        if self.conflict:
            raise errors.LeaseConflict("gone")
        if self.down:
            raise errors.TransportError("connection refused")
        if entry["n"] in self.refuse:
            raise errors.ValidationError("bad entry", field="points")
        self.got.append(entry["n"])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def outbox(tmp_path: Path, server: FlakyServer, clock: Clock | None = None,
           **kwargs: Any) -> Outbox:
    return Outbox(Spool(tmp_path), server.send, delays=FixedDelay(1.0),
                  clock=clock or Clock(), **kwargs)


def test_spools_while_down_and_replays_in_order(tmp_path: Path) -> None:
    server, clock = FlakyServer(), Clock()
    box = outbox(tmp_path, server, clock)
    assert box.post({"n": 1})
    server.down = True
    assert not box.post({"n": 2})
    assert not box.post({"n": 3})  # queued behind 2, not tried
    assert box.backlog and box.down
    assert (tmp_path / "spool.jsonl").read_text().count("\n") == 2  # on disk, not in memory
    server.down = False
    # Not before the retry delay: new messages queue behind the spool, never overtake it.
    assert not box.post({"n": 4})
    assert server.got == [1]
    clock.now += 60
    assert box.flush()
    assert server.got == [1, 2, 3, 4]
    assert not box.backlog and not box.down
    assert not (tmp_path / "spool.jsonl").exists()  # delivered: the files start afresh
    assert box.post({"n": 5})
    assert server.got == [1, 2, 3, 4, 5]


def test_a_failed_replay_stops_where_it_is_and_resends_nothing(tmp_path: Path) -> None:
    server, clock = FlakyServer(), Clock()
    box = outbox(tmp_path, server, clock)
    server.down = True
    for n in range(5):
        box.post({"n": n})
    calls = {"count": 0}
    real = server.send

    def down_after_two(entry: dict[str, Any]) -> None:
        calls["count"] += 1
        if calls["count"] > 2:
            raise errors.TransportError("down again")
        real(entry)

    server.down = False
    box._send = down_after_two
    clock.now += 60
    assert not box.flush()
    assert server.got == [0, 1] and box.down
    box._send = real
    assert not box.flush()  # not before the retry delay
    clock.now += 60
    assert box.flush()
    assert server.got == [0, 1, 2, 3, 4]  # nothing lost, nothing twice


def test_the_cursor_survives_a_restart(tmp_path: Path) -> None:
    server = FlakyServer()
    spool = Spool(tmp_path)
    for n in range(3):
        spool.append(json.dumps({"n": n}).encode())
    entries = spool.entries()
    first, end = next(entries)
    server.send(first)
    spool.ack(end)
    # A crash here: the next process finds the cursor on disk and goes on after entry 0.
    again = Spool(tmp_path)
    assert again.pending
    box = Outbox(again, server.send, delays=FixedDelay(1.0))
    assert box.flush(force=True)
    assert server.got == [0, 1, 2]


def test_refused_unreadable_and_torn_entries_do_not_block_the_rest(tmp_path: Path) -> None:
    server = FlakyServer()
    server.refuse = {1}
    spool = Spool(tmp_path)
    for n in range(3):
        spool.append(json.dumps({"n": n}).encode())
    spool.append(b"garbage line")
    spool.append(b"[1, 2]")  # JSON, but not a message
    spool.append(json.dumps({"n": 3}).encode())
    with open(spool.path, "a") as fh:
        fh.write('{"n": 4, "bo')  # torn by a crash mid-append: it can never be completed
    box = Outbox(Spool(tmp_path), server.send, delays=FixedDelay(1.0))
    assert box.flush(force=True)
    assert server.got == [0, 2, 3]
    assert not box.backlog


def test_lease_conflict_propagates_and_keeps_the_entry(tmp_path: Path) -> None:
    server = FlakyServer()
    box = outbox(tmp_path, server)
    server.conflict = True
    with pytest.raises(errors.LeaseConflict):
        box.post({"n": 1})
    server.down, server.conflict = True, False
    box.post({"n": 2})
    server.down, server.conflict = False, True
    with pytest.raises(errors.LeaseConflict):
        box.flush(force=True)
    assert box.backlog  # the caller decides what becomes of a spool whose lease is gone


def test_outage_callbacks_and_a_failure_seen_elsewhere(tmp_path: Path) -> None:
    server, clock = FlakyServer(), Clock()
    said: list[str] = []
    box = outbox(tmp_path, server, clock,
                 on_down=lambda box, why: said.append(f"down: {why}"),
                 on_up=lambda box, outage_s: said.append(f"up after {outage_s:.0f}"))
    box.mark_down("heartbeat refused")  # e.g. the SDK's heartbeat: nothing spooled yet
    box.mark_down("again")  # one outage, told once
    assert said == ["down: heartbeat refused"] and box.down and not box.backlog
    assert not box.flush()
    assert not box.post({"n": 1})  # queued behind the outage until the retry time
    clock.now += 5
    assert box.flush()
    assert said == ["down: heartbeat refused", "up after 5"] and server.got == [1]


def test_a_custom_encoding_embeds_bytes_as_they_are(tmp_path: Path) -> None:
    server = FlakyServer()

    def encode(entry: Any) -> bytes:
        return b'{"n":' + entry["raw"] + b"}"

    box = outbox(tmp_path, server, encode=encode)
    server.down = True
    box.post({"n": 7, "raw": b"7"})
    assert (tmp_path / "spool.jsonl").read_bytes() == b'{"n":7}\n'
    server.down = False
    assert box.flush(force=True) and server.got == [7]


def test_concurrent_posts_keep_one_order(tmp_path: Path) -> None:
    server, clock = FlakyServer(), Clock()
    box = outbox(tmp_path, server, clock)
    server.down = True
    per_thread = 200

    def poster(base: int) -> None:
        for i in range(per_thread):
            box.post({"n": base + i})
            if base == 0 and i == per_thread // 2:
                server.down = False
                clock.now += 60

    threads = [threading.Thread(target=poster, args=(k * 10_000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert box.flush(force=True)
    assert sorted(server.got) == sorted(k * 10_000 + i for k in range(4)
                                        for i in range(per_thread))  # nothing lost or twice
    for k in range(4):  # each thread's messages arrive in the order it posted them
        mine = [n for n in server.got if n // 10_000 == k]
        assert mine == sorted(mine)
