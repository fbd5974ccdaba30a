"""``import runyard`` has no side effects and loads nothing heavy (docs/sdk.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, logging, sys, warnings
before_handlers = list(logging.getLogger().handlers)
import runyard
import runyard.sdk
heavy = sorted({m.split(".")[0] for m in sys.modules} & {
    "httpx", "sqlalchemy", "alembic", "fastapi", "pydantic", "torch", "numpy", "jsonschema"})
print(json.dumps({"heavy": heavy, "handlers": len(logging.getLogger().handlers)
                  - len(before_handlers), "sdk_logger": len(logging.getLogger("runyard").handlers),
                  "configure": callable(runyard.configure)}))
"""


def test_import_runyard_is_light_and_side_effect_free(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    env.update({"PYTHONPATH": str(REPO), "HOME": str(tmp_path), "XDG_DATA_HOME": "",
                "RUNYARD_SERVER": "http://127.0.0.1:1"})
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out == {"heavy": [], "handlers": 0, "sdk_logger": 0, "configure": True}
    assert list(tmp_path.iterdir()) == []  # no data directory, no files: nothing happened


CLI_PROBE = """
import json, sys
import runyard.cli.app
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {
    "jsonschema", "sqlalchemy", "alembic", "fastapi", "uvicorn", "torch"}
    or m.startswith(("runyard.manifest", "runyard.server", "runyard.store")))))
"""


def test_the_cli_starts_without_the_manifest_parser_or_the_server_stack() -> None:
    """Every ``runyard`` call imports the whole command tree: a command's heavy imports wait
    until it runs, or every call pays for them (benchmarks/README.md)."""
    proc = subprocess.run([sys.executable, "-c", CLI_PROBE], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


SETTINGS_PROBE = """
import json, sys
from runyard.server import Settings
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {
    "sqlalchemy", "alembic", "fastapi", "starlette", "uvicorn"}
    or m in {"runyard.server.app", "runyard.store"})))
"""


def test_server_settings_load_without_the_app() -> None:
    """``runyard server`` checks its settings before it loads the web framework and the store,
    so a bad flag is refused at once (runyard/server/__init__.py)."""
    proc = subprocess.run([sys.executable, "-c", SETTINGS_PROBE], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
