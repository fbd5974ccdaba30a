"""The batch script of an attempt's job (docs/executors.md, "Slurm").

The script only starts ``runyard supervise`` for the attempt, with ``exec`` so that the
supervisor is the batch shell and gets Slurm's signals itself (``scancel --signal=TERM
--full``, the time-limit warning of ``--signal=B:TERM@S``). Everything the supervisor needs
is in the attempt's directory on the shared work directory; the attempt's credential is in a
mode-0600 file there, named on the command line, never written into the script (Slurm keeps
scripts, and ``scontrol write batch_script`` shows them) nor into ``sbatch``'s argv.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path


def render(supervise_argv: Sequence[str], *, run_id: str, number: int,
           cwd: str | os.PathLike[str], master_env: Sequence[str] = ()) -> str:
    """The script's text. ``master_env``: an argv that prints ``export MASTER_ADDR=...
    MASTER_PORT=...`` for a run over several nodes (run on the first node, where the script
    runs; :mod:`runyard.agent.slurm.launch`)."""
    lines = [
        "#!/bin/bash",
        f"# Runyard run {run_id} attempt {number}: written by `runyard agent --executor slurm`.",
        "# The supervisor reports progress, metrics, logs and the outcome to the server itself.",
        f"cd {shlex.quote(os.fspath(cwd))} || exit 1",
    ]
    if master_env:
        lines.append(f'eval "$({" ".join(shlex.quote(a) for a in master_env)})" || exit 1')
    lines += ["exec " + " ".join(shlex.quote(a) for a in supervise_argv), ""]
    return "\n".join(lines)


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (created 0600, never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
