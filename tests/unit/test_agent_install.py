"""``runyard agent install``: rendered systemd unit, env file, Windows script, file modes."""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path

import pytest

from runyard import errors
from runyard.agent import install
from runyard.agent.install import AgentOptions

TOKEN = "ryw_s3cr3t.T0KEN-xyz"


def options(**overrides: object) -> AgentOptions:
    values: dict[str, object] = dict(server="https://runyard.lab:8470", token=TOKEN,
                                     host_id="gpu-box", slots=2,
                                     labels={"rack": "3", "gpu": "a100"},
                                     work_dir="/srv/runyard work", python="/opt/venv/bin/python")
    values.update(overrides)
    return AgentOptions(**values)  # type: ignore[arg-type]


def unit_value(unit: str, key: str) -> str:
    match = re.search(rf"^{key}=(.*)$", unit, re.MULTILINE)
    assert match, f"{key}= missing from the unit"
    return match.group(1)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_agent_argv_never_holds_the_token() -> None:
    argv = install.agent_argv(options(probe_interval_s=0.5, executor="local"))
    assert argv == ["/opt/venv/bin/python", "-m", "runyard", "agent",
                    "--server", "https://runyard.lab:8470", "--host-id", "gpu-box",
                    "--slots", "2", "--labels", "gpu=a100,rack=3",
                    "--work-dir", "/srv/runyard work", "--probe-interval-s", "0.5",
                    "--executor", "local"]
    assert install.agent_argv(AgentOptions(server="http://x:1", python="py")) == \
        ["py", "-m", "runyard", "agent", "--server", "http://x:1"]


def test_system_unit() -> None:
    opts = options(grace_s=45, run_as="runyard")
    unit = install.render_systemd_unit(opts, "/etc/runyard/runyard-agent.env")
    assert unit_value(unit, "ExecStart") == (
        "/opt/venv/bin/python -m runyard agent --server https://runyard.lab:8470 "
        "--host-id gpu-box --slots 2 --labels gpu=a100,rack=3 "
        '--work-dir "/srv/runyard work"')
    assert unit_value(unit, "EnvironmentFile") == "-/etc/runyard/runyard-agent.env"
    assert unit_value(unit, "Restart") == "always"
    assert unit_value(unit, "KillSignal") == "SIGTERM"
    assert unit_value(unit, "KillMode") == "mixed"
    assert int(unit_value(unit, "TimeoutStopSec")) > 45
    assert unit_value(unit, "WorkingDirectory") == "/srv/runyard work"
    assert unit_value(unit, "User") == "runyard"
    assert unit_value(unit, "WantedBy") == "multi-user.target"
    assert unit_value(unit, "After") == "network-online.target"
    assert TOKEN not in unit
    for section in ("[Unit]", "[Service]", "[Install]"):
        assert section in unit.splitlines()


def test_user_unit() -> None:
    unit = install.render_systemd_unit(options(user_mode=True, run_as="ignored"), "/h/.env")
    assert unit_value(unit, "WantedBy") == "default.target"
    assert "network-online.target" not in unit
    assert "User=" not in unit  # a user manager cannot switch users


@pytest.mark.parametrize(("arg", "quoted"), [
    ("/usr/bin/python3", "/usr/bin/python3"),
    ("two words", '"two words"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("back\\slash", '"back\\\\slash"'),
    ("100%", '"100%%"'),
    ("$HOME", '"$$HOME"'),
])
def test_systemd_quote(arg: str, quoted: str) -> None:
    assert install.systemd_quote(arg) == quoted


def test_env_file_holds_the_token_only_there() -> None:
    text = install.render_env_file(options())
    assert f"RUNYARD_TOKEN={TOKEN}\n" in text
    assert "RUNYARD_TOKEN" not in install.render_env_file(options(token=None))


@pytest.mark.parametrize(("overrides", "field"), [
    ({"server": "runyard.lab:8470"}, "server"),
    ({"server": ""}, "server"),
    ({"token": "has space"}, "token"),
    ({"token": "line\nbreak"}, "token"),
    ({"token": ""}, "token"),
    ({"slots": 0}, "slots"),
    ({"grace_s": -1}, "grace_s"),
    ({"service_name": "../evil"}, "service_name"),
    ({"work_dir": "relative/dir"}, "work_dir"),
    ({"work_dir": "/srv/a\nExecStartPre=/bin/rm"}, "work_dir"),
    ({"labels": {"a": "b,c=d"}}, "labels"),
    ({"python": ""}, "python"),
    ({"train_as": "bob\nExecStartPre=/bin/rm"}, "train_as"),
    ({"train_as": "bob", "user_mode": True}, "train_as"),  # a user manager cannot switch
    ({"train_as": "bob", "run_as": "runyard"}, "train_as"),  # nor a non-root agent
])
def test_bad_options_name_the_field(overrides: dict[str, object], field: str,
                                    tmp_path: Path) -> None:
    with pytest.raises(errors.ValidationError) as exc:
        install.install(options(**overrides), unit_dir=tmp_path, env_dir=tmp_path,
                        echo=lambda _: None)
    assert exc.value.field == field
    assert list(tmp_path.iterdir()) == []  # nothing half-written


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_install_writes_unit_and_private_env_file(tmp_path: Path) -> None:
    units, envs = tmp_path / "systemd" / "system", tmp_path / "etc" / "runyard"
    envs.mkdir(parents=True)
    stale = envs / "runyard-agent.env"
    stale.write_text("RUNYARD_TOKEN=old\n")
    stale.chmod(0o644)  # a leftover, too open: the install must tighten it
    printed: list[str] = []
    old_umask = os.umask(0)  # the modes must not depend on the caller's umask
    try:
        plan = install.install(options(), target="systemd", unit_dir=units, env_dir=envs,
                               echo=printed.append)
    finally:
        os.umask(old_umask)
    unit_path, env_path = units / "runyard-agent.service", envs / "runyard-agent.env"
    assert [f.path for f in plan.files] == [unit_path, env_path]
    assert mode(env_path) == 0o600 and mode(unit_path) == 0o644
    assert env_path.read_text() == install.render_env_file(options())
    unit = unit_path.read_text()
    assert unit_value(unit, "EnvironmentFile") == f"-{env_path}"
    assert sorted(p.name for p in envs.iterdir()) == ["runyard-agent.env"]  # no temp files
    output = "\n".join(printed)
    assert TOKEN not in output
    assert "sudo systemctl daemon-reload" in output
    assert "sudo systemctl enable --now runyard-agent.service" in output


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_user_install_follows_xdg_config_home(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    printed: list[str] = []
    install.install(options(user_mode=True, service_name="runyard-agent-2"), target="systemd",
                    echo=printed.append)
    unit = tmp_path / "cfg" / "systemd" / "user" / "runyard-agent-2.service"
    env = tmp_path / "cfg" / "runyard" / "runyard-agent-2.env"
    assert unit.is_file() and mode(env) == 0o600
    assert "systemctl --user enable --now runyard-agent-2.service" in "\n".join(printed)


def test_dry_run_prints_with_the_token_masked_and_writes_nothing(tmp_path: Path) -> None:
    printed: list[str] = []
    plan = install.install(options(), target="systemd", dry_run=True, unit_dir=tmp_path / "u",
                           env_dir=tmp_path / "e", echo=printed.append)
    output = "\n".join(printed)
    assert not (tmp_path / "u").exists() and not (tmp_path / "e").exists()
    assert TOKEN not in output and "RUNYARD_TOKEN=********" in output
    assert "ExecStart=/opt/venv/bin/python -m runyard agent" in output
    assert f"# {tmp_path / 'e' / 'runyard-agent.env'} (mode 0600)" in output
    assert plan.files[1].content.endswith(f"RUNYARD_TOKEN={TOKEN}\n")


def test_train_as_is_passed_to_the_agent() -> None:
    """The agent (root) starts runs as another OS user: they cannot read its token, from its
    process or its environment file. Switching users is tested for real in
    test_agent_secrets.py; here, that the service starts the agent so."""
    opts = options(train_as="trainer")
    assert install.agent_argv(opts)[-2:] == ["--train-as", "trainer"]
    unit = install.render_systemd_unit(opts, "/etc/runyard/runyard-agent.env")
    assert unit_value(unit, "ExecStart").endswith(" --train-as trainer")
    assert "User=" not in unit  # the agent itself stays root
    with pytest.raises(errors.ValidationError) as exc:
        install.render_windows_script(opts)
    assert exc.value.field == "train_as"


def test_cli_install_takes_train_as(tmp_path: Path) -> None:
    import subprocess

    res = subprocess.run(
        [sys.executable, "-m", "runyard", "agent", "install", "--server", "http://x:1",
         "--train-as", "trainer", "--dry-run"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert res.returncode == 0, res.stderr
    assert re.search(r"^ExecStart=.* --train-as trainer$", res.stdout, re.MULTILINE), res.stdout


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0,
                    reason="needs a non-root POSIX user for a permission error")
def test_unwritable_target_is_a_config_error_with_a_hint(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(errors.ConfigError, match="permission denied.*sudo, or use --user"):
            install.install(options(), target="systemd", unit_dir=locked, env_dir=locked,
                            echo=lambda _: None)
    finally:
        locked.chmod(0o700)


def test_a_file_in_place_of_the_directory_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "units"
    blocker.write_text("not a directory")
    with pytest.raises(errors.ConfigError, match="cannot write .*runyard-agent.service"):
        install.install(options(), target="systemd", unit_dir=blocker, env_dir=tmp_path,
                        echo=lambda _: None)


def test_windows_script() -> None:
    script = install.render_windows_script(options(work_dir="/srv/o'brien"))
    assert "Register-ScheduledTask" in script and "New-ScheduledTaskTrigger -AtStartup" in script
    assert "-RestartCount" in script and "[TimeSpan]::Zero" in script
    assert f"-Value '{TOKEN}'" in script  # stored in the ACL-protected token file...
    launcher = script.split("@'\n", 1)[1].split("\n'@", 1)[0]
    assert TOKEN not in launcher  # ...and never in the task's command line
    assert "'--work-dir' '/srv/o''brien'" in launcher  # PowerShell literal quoting
    assert "& '/opt/venv/bin/python' '-m' 'runyard' 'agent'" in launcher
    assert "icacls $TokenFile /inheritance:r" in script
    assert script.rstrip().endswith("Remove-Item -LiteralPath $PSCommandPath")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_windows_install_writes_a_private_script(tmp_path: Path) -> None:
    target = tmp_path / "enrol.ps1"
    printed: list[str] = []
    install.install(options(), target="windows", script_path=target, echo=printed.append)
    assert mode(target) == 0o600
    assert "Register-ScheduledTask" in target.read_text()
    assert TOKEN not in "\n".join(printed)
    assert f"-File {target}" in "\n".join(printed)
    printed.clear()
    install.install(options(), target="windows", script_path=tmp_path / "dry.ps1",
                    dry_run=True, echo=printed.append)
    assert not (tmp_path / "dry.ps1").exists()
    assert TOKEN not in "\n".join(printed) and "-Value '********'" in "\n".join(printed)


def test_unknown_target_is_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.ValidationError) as exc:
        install.install(options(), target="launchd", unit_dir=tmp_path,  # type: ignore[arg-type]
                        echo=lambda _: None)
    assert exc.value.field == "target"
