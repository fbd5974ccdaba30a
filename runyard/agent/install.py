"""``runyard agent install``: enrol this host with one command.

On Linux it writes a systemd unit (system-wide, or ``--user``) that runs
``<python> -m runyard agent --server URL ...`` and an ``EnvironmentFile`` holding
``RUNYARD_TOKEN`` with mode 0600, so the secret is neither in the unit (world-readable) nor
in the process's argv (visible in ``ps``). With ``--train-as USER`` the agent (root) starts
every run as USER, who can read neither that file nor the agent's process
(:mod:`runyard.agent.isolation`): what a shared host needs, since a run as the agent's own
user could read the file. On Windows it writes a PowerShell script that
stores the token readable by SYSTEM and Administrators only and registers a Scheduled Task
started at boot.

The ``render_*`` functions are pure; :func:`plan_systemd` / :func:`plan_windows` decide paths;
:func:`install` writes (or, with ``dry_run``, prints with the token masked). Nothing here
calls ``systemctl``: the next steps are printed for the operator.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from runyard import defaults, errors

DEFAULT_SERVICE_NAME = "runyard-agent"
#: Seconds systemd waits beyond the stop grace period before it SIGKILLs what is left:
#: time for the agent to report the attempts' ends to the server.
STOP_MARGIN_S = 30.0

_TOKEN_RE = re.compile(r"^[A-Za-z0-9._~+/=:-]{1,512}$")
_SERVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
_SYSTEMD_SAFE_RE = re.compile(r"^[A-Za-z0-9_@+=:,./-]+$")


@dataclass(frozen=True)
class AgentOptions:
    """What the installed agent is started with (the options of ``runyard agent``)."""

    server: str
    token: str | None = None
    host_id: str | None = None
    slots: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    work_dir: str | None = None
    probe_interval_s: float | None = None
    executor: str | None = None
    #: Interpreter that has runyard installed; defaults to the one running the installer.
    python: str = field(default_factory=lambda: sys.executable)
    service_name: str = DEFAULT_SERVICE_NAME
    #: A ``systemctl --user`` unit instead of a system one.
    user_mode: bool = False
    #: ``User=`` of a system unit (None: root).
    run_as: str | None = None
    #: The OS user runs are started as (``runyard agent --train-as``); the agent stays root.
    train_as: str | None = None
    grace_s: float = defaults.STOP_GRACE_S

    def validate(self) -> None:
        """Raise :class:`errors.ValidationError` naming the first bad option."""
        if not re.match(r"^https?://[^\s/]+", self.server or ""):
            raise errors.ValidationError(
                f"server: expected an http:// or https:// URL, got {self.server!r}",
                field="server")
        if self.token is not None and not _TOKEN_RE.match(self.token):
            raise errors.ValidationError(
                "token: expected 1-512 characters of letters, digits and ._~+/=:-",
                field="token")
        if not _SERVICE_RE.match(self.service_name):
            raise errors.ValidationError(
                f"service_name: expected letters, digits and _.@-, got {self.service_name!r}",
                field="service_name")
        if self.slots is not None and (isinstance(self.slots, bool) or self.slots < 1):
            raise errors.ValidationError(f"slots: must be at least 1, got {self.slots!r}",
                                         field="slots")
        if self.grace_s < 0:
            raise errors.ValidationError(f"grace_s: must not be negative, got {self.grace_s}",
                                         field="grace_s")
        if not self.python:
            raise errors.ValidationError("python: the interpreter path is empty", field="python")
        for name in ("python", "host_id", "work_dir", "executor", "run_as", "train_as"):
            value = getattr(self, name)
            if value is not None and any(c in str(value) for c in "\n\r\0"):
                raise errors.ValidationError(f"{name}: cannot hold newlines or NUL",
                                             field=name)
        if self.train_as is not None and (self.user_mode or self.run_as not in (None, "root")):
            raise errors.ValidationError(
                "train_as: switching runs to another user needs an agent running as root "
                "(a system unit without --run-as)", field="train_as")
        if self.work_dir is not None and not os.path.isabs(self.work_dir):
            raise errors.ValidationError(
                f"work_dir: expected an absolute path, got {self.work_dir!r}", field="work_dir")
        for key, value in self.labels.items():
            if not key or any(c in key + value for c in ",=\n"):
                raise errors.ValidationError(
                    f"labels: {key!r}={value!r} cannot hold ',', '=' or newlines",
                    field="labels")


def agent_argv(opts: AgentOptions) -> list[str]:
    """The command the service runs. The token is never part of it."""
    argv = [opts.python, "-m", "runyard", "agent", "--server", opts.server]
    if opts.host_id:
        argv += ["--host-id", opts.host_id]
    if opts.slots is not None:
        argv += ["--slots", str(opts.slots)]
    if opts.labels:
        argv += ["--labels", ",".join(f"{k}={v}" for k, v in sorted(opts.labels.items()))]
    if opts.work_dir:
        argv += ["--work-dir", opts.work_dir]
    if opts.probe_interval_s is not None:
        argv += ["--probe-interval-s", f"{opts.probe_interval_s:g}"]
    if opts.executor:
        argv += ["--executor", opts.executor]
    if opts.train_as:
        argv += ["--train-as", opts.train_as]
    return argv


# --- systemd --------------------------------------------------------------------------------


def systemd_quote(arg: str) -> str:
    """Quote one ExecStart word: systemd's own rules, ``%`` and ``$`` escaped."""
    if not _SYSTEMD_SAFE_RE.match(arg):
        arg = '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg.replace("%", "%%").replace("$", "$$")


def systemd_path(path: str) -> str:
    """A path setting (``WorkingDirectory=``...): taken literally, only ``%`` is special."""
    return path.replace("%", "%%")


def stop_timeout_s(opts: AgentOptions) -> int:
    """``TimeoutStopSec``: always longer than the runs' stop grace period."""
    return int(opts.grace_s + STOP_MARGIN_S)


def render_systemd_unit(opts: AgentOptions, env_file: str | os.PathLike[str]) -> str:
    """The ``.service`` file."""
    opts.validate()
    exec_start = " ".join(systemd_quote(a) for a in agent_argv(opts))
    unit = [
        "# Written by `runyard agent install`; run it again to change this file.",
        "[Unit]",
        f"Description=Runyard agent ({opts.host_id or 'this host'})",
    ]
    if not opts.user_mode:  # the user manager has no network-online.target
        unit += ["Wants=network-online.target", "After=network-online.target"]
    unit += [
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={exec_start}",
        # "-": start even if the file was removed (a server without auth needs no token).
        f"EnvironmentFile=-{systemd_path(os.fspath(env_file))}",
        "Environment=PYTHONUNBUFFERED=1",
    ]
    if opts.work_dir:
        unit.append(f"WorkingDirectory={systemd_path(opts.work_dir)}")
    if opts.run_as and not opts.user_mode:
        unit.append(f"User={opts.run_as}")
    unit += [
        "Restart=always",
        "RestartSec=5",
        # Only the agent gets SIGTERM; it creates the runs' stop files, signals them and
        # waits their grace period. systemd kills the rest only after TimeoutStopSec.
        "KillSignal=SIGTERM",
        "KillMode=mixed",
        f"TimeoutStopSec={stop_timeout_s(opts)}",
        "",
        "[Install]",
        f"WantedBy={'default.target' if opts.user_mode else 'multi-user.target'}",
        "",
    ]
    return "\n".join(unit)


def render_env_file(opts: AgentOptions) -> str:
    """The ``EnvironmentFile``: the token, readable by its owner only."""
    opts.validate()
    lines = ["# Runyard agent secrets (mode 0600). Written by `runyard agent install`."]
    if opts.token:
        lines.append(f"RUNYARD_TOKEN={opts.token}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PlannedFile:
    path: Path
    content: str
    mode: int
    #: Holds the token: masked in dry runs.
    secret: bool = False


@dataclass(frozen=True)
class InstallPlan:
    files: list[PlannedFile]
    next_steps: list[str]


def _config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def plan_systemd(opts: AgentOptions, *, unit_dir: str | os.PathLike[str] | None = None,
                 env_dir: str | os.PathLike[str] | None = None) -> InstallPlan:
    """Files and next steps of a systemd install; the directories can be overridden."""
    if opts.user_mode:
        units = Path(unit_dir) if unit_dir else _config_home() / "systemd" / "user"
        envs = Path(env_dir) if env_dir else _config_home() / "runyard"
    else:
        units = Path(unit_dir) if unit_dir else Path("/etc/systemd/system")
        envs = Path(env_dir) if env_dir else Path("/etc/runyard")
    env_file = envs / f"{opts.service_name}.env"
    unit_name = f"{opts.service_name}.service"
    files = [
        PlannedFile(units / unit_name, render_systemd_unit(opts, env_file), 0o644),
        PlannedFile(env_file, render_env_file(opts), 0o600, secret=True),
    ]
    ctl = "systemctl --user" if opts.user_mode else "sudo systemctl"
    steps = [f"{ctl} daemon-reload", f"{ctl} enable --now {unit_name}"]
    if opts.user_mode:
        steps.append("loginctl enable-linger \"$USER\"   # keep it running after you log out")
        steps.append(f"journalctl --user -u {unit_name} -f")
    else:
        steps.append(f"journalctl -u {unit_name} -f")
    return InstallPlan(files, steps)


# --- Windows --------------------------------------------------------------------------------


def _ps_quote(text: str) -> str:
    """A PowerShell single-quoted (literal) string."""
    return "'" + text.replace("'", "''") + "'"


def render_windows_script(opts: AgentOptions) -> str:
    """A PowerShell script registering the agent as a Scheduled Task started at boot."""
    opts.validate()
    if opts.train_as:
        raise errors.ValidationError("train_as: not available on Windows", field="train_as")
    name = opts.service_name
    command = " ".join(_ps_quote(a) for a in agent_argv(opts))
    token_rel = _ps_quote(f"Runyard\\{name}.token")
    token_line = (f"Set-Content -LiteralPath $TokenFile -Value {_ps_quote(opts.token)} "
                  "-NoNewline -Encoding ascii" if opts.token else
                  "Set-Content -LiteralPath $TokenFile -Value '' -NoNewline -Encoding ascii")
    return f"""\
# Written by `runyard agent install --windows`. Run once in an elevated PowerShell:
#   powershell -NoProfile -ExecutionPolicy Bypass -File <this file>
# It deletes itself at the end, because it holds the agent's token.
$ErrorActionPreference = 'Stop'
$TaskName = {_ps_quote(name)}
$Dir = Join-Path $env:ProgramData 'Runyard'
New-Item -ItemType Directory -Force -Path $Dir | Out-Null

# The token, readable by SYSTEM and Administrators only (never in the task's arguments).
$TokenFile = Join-Path $Dir {_ps_quote(name + '.token')}
{token_line}
icacls $TokenFile /inheritance:r /grant:r 'SYSTEM:(R)' 'Administrators:(F)' | Out-Null

# The launcher the task runs: load the token, start the agent, pass its exit code on.
$Launcher = Join-Path $Dir {_ps_quote(name + '.ps1')}
@'
$env:RUNYARD_TOKEN = (Get-Content -Raw -LiteralPath (Join-Path $env:ProgramData {token_rel}))
$env:PYTHONUNBUFFERED = '1'
& {command}
exit $LASTEXITCODE
'@ | Set-Content -LiteralPath $Launcher -Encoding utf8

$Action = New-ScheduledTaskAction -Execute 'powershell.exe' `
    -Argument "-NoProfile -NonInteractive -ExecutionPolicy Bypass -File `"$Launcher`""
$Trigger = New-ScheduledTaskTrigger -AtStartup
# Restart on failure, never time out, run on battery power.
$Settings = New-ScheduledTaskSettingsSet -RestartCount 999 `
    -RestartInterval (New-TimeSpan -Minutes 1) -ExecutionTimeLimit ([TimeSpan]::Zero) `
    -StartWhenAvailable -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries
$Principal = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest
Register-ScheduledTask -TaskName $TaskName -Action $Action -Trigger $Trigger `
    -Settings $Settings -Principal $Principal -Force | Out-Null
Start-ScheduledTask -TaskName $TaskName
Write-Host "Registered and started the scheduled task $TaskName"
Remove-Item -LiteralPath $PSCommandPath
"""


def plan_windows(opts: AgentOptions, *,
                 script_path: str | os.PathLike[str] | None = None) -> InstallPlan:
    """The Windows script (default: ``install-<service>.ps1`` in the current directory)."""
    path = Path(script_path) if script_path else Path(f"install-{opts.service_name}.ps1")
    return InstallPlan(
        [PlannedFile(path, render_windows_script(opts), 0o600, secret=True)],
        [f"powershell -NoProfile -ExecutionPolicy Bypass -File {path}   # as Administrator"],
    )


# --- writing --------------------------------------------------------------------------------


def mask(text: str, token: str | None) -> str:
    """``text`` with the token replaced by asterisks."""
    return text.replace(token, "********") if token else text


def write_file(path: Path, content: str, mode: int) -> None:
    """Write atomically with ``mode`` set before any content lands (no umask window)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # not on Windows, where modes mean little anyway
            os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        os.chmod(path, mode)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


Target = Literal["systemd", "windows"]


def install(opts: AgentOptions, *, target: Target | None = None, dry_run: bool = False,
            unit_dir: str | os.PathLike[str] | None = None,
            env_dir: str | os.PathLike[str] | None = None,
            script_path: str | os.PathLike[str] | None = None,
            echo: Callable[[str], None] = print) -> InstallPlan:
    """Write the service files (or print them with ``dry_run``) and print the next steps.

    ``target`` defaults to ``windows`` on Windows and ``systemd`` elsewhere.
    """
    opts.validate()
    if target is None:
        target = "windows" if sys.platform == "win32" else "systemd"
    if target == "systemd":
        plan = plan_systemd(opts, unit_dir=unit_dir, env_dir=env_dir)
    elif target == "windows":
        plan = plan_windows(opts, script_path=script_path)
    else:
        raise errors.ValidationError(f"target: expected systemd or windows, got {target!r}",
                                     field="target")
    for planned in plan.files:
        if dry_run:
            shown = mask(planned.content, opts.token) if planned.secret else planned.content
            echo(f"# {planned.path} (mode {planned.mode:04o})\n{shown}")
            continue
        try:
            write_file(planned.path, planned.content, planned.mode)
        except PermissionError as exc:
            hint = "" if opts.user_mode or target == "windows" else \
                " (run it with sudo, or use --user)"
            raise errors.ConfigError(f"cannot write {planned.path}: permission denied{hint}") \
                from exc
        except OSError as exc:
            raise errors.ConfigError(f"cannot write {planned.path}: {exc.strerror or exc}") \
                from exc
        echo(f"wrote {planned.path} (mode {planned.mode:04o})")
    echo("next:" if not dry_run else "then:")
    for step in plan.next_steps:
        echo(f"  {step}")
    return plan
