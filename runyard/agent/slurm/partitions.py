"""What a Slurm partition offers, from ``sinfo`` (docs/executors.md, "Slurm").

A Slurm agent serves one partition (``--partition``, else the cluster's default) and
advertises it as one worker: ``cpus``, ``ram_gib`` and ``gpus`` are what the largest usable
node offers (a run's ``min_cpus``, ``min_ram_gib`` and ``gpus`` are per node), ``nodes`` how
many nodes are usable now. The server hands the agent only runs that fit, so a run asking for
more than the partition has stays queued with the reason (``runyard show`` names it) instead
of failing in ``sbatch`` again and again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from runyard.agent.slurm import parse


@dataclass(frozen=True)
class Offer:
    """One partition's usable resources (per node, except ``nodes``)."""

    partition: str
    nodes: int
    nodes_total: int
    cpus: int
    memory_mb: int
    gpus: int
    gpu_type: str
    time_limit: str
    up: bool

    @property
    def ram_gib(self) -> float:
        return round(self.memory_mb / 1024, 2)

    def to_dict(self) -> dict[str, object]:
        return {"partition": self.partition, "nodes": self.nodes,
                "nodes_total": self.nodes_total, "cpus": self.cpus, "ram_gib": self.ram_gib,
                "gpus": self.gpus, "gpu_type": self.gpu_type, "time_limit": self.time_limit,
                "up": self.up}


def offers(nodes: Iterable[parse.NodeInfo]) -> list[Offer]:
    """One offer per partition, in ``sinfo``'s order."""
    by_part: dict[str, list[parse.NodeInfo]] = {}
    for n in nodes:
        by_part.setdefault(n.partition, []).append(n)
    out = []
    for name, members in by_part.items():
        usable = [n for n in members if n.usable]
        pick = usable or members
        out.append(Offer(partition=name, nodes=len({n.name for n in usable}),
                         nodes_total=len({n.name for n in members}),
                         cpus=max((n.cpus for n in pick), default=0) if usable else 0,
                         memory_mb=max((n.memory_mb for n in pick), default=0) if usable else 0,
                         gpus=max((n.gpus for n in pick), default=0) if usable else 0,
                         gpu_type=next((n.gpu_type for n in pick if n.gpu_type), ""),
                         time_limit=members[0].time_limit,
                         up=any(n.partition_up for n in members)))
    return out


def pick(all_offers: Sequence[Offer], partition: str | None) -> Offer | None:
    """The offer of ``partition`` (None: the first, which the caller makes the default)."""
    for o in all_offers:
        if partition is None or o.partition == partition:
            return o
    return None


def gpu_entries(offer: Offer) -> list[dict[str, object]]:
    """The ``gpus`` list of the capabilities: one entry per GPU of a node. Slurm does not say
    how much memory a GPU has, so ``vram_gib`` is 0 (runs asking ``min_vram_gib`` need a
    ``--gres`` type in ``slurm.sbatch_args`` instead)."""
    return [{"index": i, "name": offer.gpu_type or "gpu", "vram_gib": 0.0, "uuid": ""}
            for i in range(offer.gpus)]


def format_table(all_offers: Sequence[Offer], served: str | None) -> str:
    """The partitions as ``runyard agent --check`` prints them."""
    lines = [f"  {'partition':<16} {'nodes':>9} {'cpus/node':>9} {'mem/node':>10} "
             f"{'gpus/node':>10}  time limit"]
    for o in all_offers:
        mark = "*" if o.partition == served else " "
        gpus = f"{o.gpus}" + (f" ({o.gpu_type})" if o.gpus and o.gpu_type else "")
        state = "" if o.up else "  (partition down)"
        lines.append(f"{mark} {o.partition:<16} {f'{o.nodes}/{o.nodes_total}':>9} {o.cpus:>9} "
                     f"{f'{o.ram_gib:g} GiB':>10} {gpus:>10}  {o.time_limit}{state}")
    return "\n".join(lines)
