"""``runyard`` on a base install (no ``server`` extra): one line naming the extra, no traceback."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = ("runyard: the command line needs the server extra (typer, rich missing); "
            "install it with: pip install 'runyard[server]'")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX venv layout")


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv that sees this checkout and nothing else: no typer, no rich."""
    home = tmp_path_factory.mktemp("bare") / "venv"
    venv.create(home, with_pip=False, symlinks=True)
    python = home / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "runyard.pth").write_text(f"{ROOT}\n", encoding="utf-8")
    return python


def _env() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}


def test_the_bare_venv_has_runyard_but_not_the_extra(bare_python: Path) -> None:
    res = subprocess.run(
        [bare_python, "-c", "import importlib.util as u, runyard; "
         "print(u.find_spec('typer'), u.find_spec('rich'), runyard.__file__)"],
        capture_output=True, text=True, timeout=60, env=_env())
    assert res.returncode == 0, res.stderr
    none_typer, none_rich, where = res.stdout.split()
    assert (none_typer, none_rich) == ("None", "None")
    assert Path(where).is_relative_to(ROOT)


# The console script a base install writes runs `from runyard.cli import main; main()`.
@pytest.mark.parametrize("argv", [
    ["-c", "import sys; from runyard.cli import main; sys.exit(main())", "--help"],
    ["-m", "runyard", "--help"],
    ["-m", "runyard", "ls"],
])
def test_runyard_without_the_server_extra_names_it(bare_python: Path, argv: list[str]) -> None:
    res = subprocess.run([bare_python, *argv], capture_output=True, text=True, timeout=60,
                         env=_env())
    assert res.returncode == 1
    assert res.stdout == ""
    assert res.stderr.splitlines() == [EXPECTED]
