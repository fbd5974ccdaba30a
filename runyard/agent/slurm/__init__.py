"""The Slurm executor: ``runyard agent --executor slurm`` (docs/executors.md, "Slurm").

Modules, one concept each: :mod:`~runyard.agent.slurm.commands` (the Slurm tools, called as
argv lists), :mod:`~runyard.agent.slurm.parse` (what they print),
:mod:`~runyard.agent.slurm.states` (job state -> termination reason),
:mod:`~runyard.agent.slurm.resources` (a run -> ``sbatch`` arguments),
:mod:`~runyard.agent.slurm.partitions` (``sinfo`` -> what a run may ask for),
:mod:`~runyard.agent.slurm.script` (the batch script), :mod:`~runyard.agent.slurm.launch` and
:mod:`~runyard.agent.slurm.rank` (multi-node launch inside the allocation).
"""
from __future__ import annotations

from runyard.agent.slurm.executor import SlurmExecutor

__all__ = ["SlurmExecutor"]
