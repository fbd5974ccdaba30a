"""The environment that lets code written for Kubeflow Trainer report unchanged
(docs/progress-protocol.md, "Code written for Kubeflow Trainer").

Kubeflow's runtime gives each training container ``KUBEFLOW_TRAINER_STATUS_URL``, the path
of a token file in ``KUBEFLOW_TRAINER_STATUS_TOKEN`` and the CA in
``KUBEFLOW_TRAINER_STATUS_CA_CERT`` (the push form), and the TrainJob progression callbacks
write the file at ``TRAINJOB_PROGRESSION_FILE_PATH`` (the file form). The agent sets the
same names: the URL of ``POST /v1/attempts/{id}/trainer-status``, a 0600 file holding the
attempt's own credential (good for that one attempt, and only while it runs: never the
worker token), the CA file the agent itself trusts (``SSL_CERT_FILE``) when the server is
HTTPS, and a progression file in the attempt's directory, which the probe reads.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

from runyard.agent.isolation import TrainUser
from runyard.progress import kubeflow

#: The agent's own CA bundle, as httpx (the agent's HTTP client) reads it.
CA_FILE_ENV = "SSL_CERT_FILE"


def status_url(server: str, attempt_id: str) -> str:
    """Where the attempt's trainer posts its status."""
    return f"{server.rstrip('/')}/v1/attempts/{attempt_id}/trainer-status"


def write_token_file(path: Path, token: str, user: TrainUser | None = None) -> None:
    """Write the credential to a new file of mode 0600 (owned by ``user``, who runs the
    training process, when given). Whatever was at ``path`` goes first, and a link is
    never followed: the attempt's directory may belong to the training user."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    try:
        if user is not None:
            os.fchown(fd, user.uid, user.gid)
        # No newline: Kubeflow's example sends the file's text as it is, and a header
        # value may not hold one.
        os.write(fd, token.encode("ascii"))
    finally:
        os.close(fd)


def remove_token_file(path: Path) -> None:
    """The credential is dead once the attempt ends; its file goes too."""
    with contextlib.suppress(OSError):
        os.unlink(path)


def trainer_env(*, server: str, attempt_id: str, token: str | None, token_file: Path,
                progression_file: Path, user: TrainUser | None = None,
                environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Kubeflow variables of one attempt's training process; writes the token file.
    Without a credential (a server that hands out none) the push form is left unset."""
    environ = os.environ if environ is None else environ
    env = {kubeflow.PROGRESSION_FILE_ENV: str(progression_file)}
    if not token:
        return env
    write_token_file(token_file, token, user)
    env[kubeflow.STATUS_URL_ENV] = status_url(server, attempt_id)
    env[kubeflow.STATUS_TOKEN_ENV] = str(token_file)
    ca_file = environ.get(CA_FILE_ENV)
    if server.startswith("https://") and ca_file:
        env[kubeflow.STATUS_CA_ENV] = str(Path(ca_file).resolve())
    return env
