"""Small builders shared by the queue tests."""

from __future__ import annotations

from typing import Any

from runyard import models
from runyard.queue import Queue


def caps(host_id: str, *, cpus: float = 8, ram: float = 16, gpus: int = 0, vram: float = 24,
         slots: int = 1, labels: dict[str, str] | None = None, executor: str = "local",
         nodes: int = 1) -> models.Capabilities:
    return models.Capabilities.from_dict({
        "host_id": host_id, "cpus": cpus, "ram_gib": ram, "slots": slots,
        "labels": labels or {}, "executor": executor, "nodes": nodes,
        "gpus": [{"index": i, "name": "fake", "vram_gib": vram} for i in range(gpus)],
    })


def submit(q: Queue, name: str = "job", **kw: Any) -> dict[str, Any]:
    req: dict[str, Any] = {"name": name, "command": ["python", "train.py"]}
    constraints = {k: kw.pop(k) for k in list(kw) if k in models.Constraints.__dataclass_fields__}
    if constraints:
        req["constraints"] = constraints
    req.update(kw)
    run, created = q.submit(req)
    assert created
    return run
