"""``runyard demo``: its manifest, and the real command (server, agent, training) end to end."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import runyard.demo
from runyard.cli import demo_jobs
from runyard.manifest import parse_manifest

from ..support.live_server import free_port

if importlib.util.find_spec("sklearn") is None:  # the processes it starts import it
    pytest.skip("scikit-learn is not installed", allow_module_level=True)

DEMO = Path(runyard.demo.__file__).parent
#: The job whose blueprint has a plateau rule that stops it (the others complete).
RULED = "mlp-early-stop"


def test_demo_manifest_has_three_real_trainers_that_download_nothing() -> None:
    manifest = parse_manifest(demo_jobs.manifest_text(), source=demo_jobs.SOURCE)
    assert len(manifest.jobs) >= 3
    assert {j.project for j in manifest.jobs} == {"demo"}
    for bp in manifest.blueprints:
        assert bp.command[:2] == ("{python}", "-m")  # runs from the installed package
        assert importlib.util.find_spec(bp.command[2]) is not None
        source = (DEMO / f"{bp.command[2].rsplit('.', 1)[1]}.py").read_text()
        assert "runyard.start_run" in source  # reports through the SDK
        assert "fetch_" not in source and "urllib" not in source  # bundled data only
    # One job's blueprint has a rule (a plateau rule that stops it); the others have none.
    ruled = {j.blueprint: j.name for j in manifest.jobs}
    with_rules = {bp.name: bp.defaults["rules"] for bp in manifest.blueprints
                  if bp.defaults.get("rules")}
    assert [ruled[name] for name in with_rules] == [RULED]
    [[rule]] = with_rules.values()
    assert (rule["name"], rule["when"], rule["tag"], rule["then"]) == (
        "flat", "plateau", "val_loss", ["stop"])


def _demo(tmp_path: Path, data_dir: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    return subprocess.Popen(
        [sys.executable, "-m", "runyard", "demo", "--data-dir", str(data_dir), "--port",
         str(free_port()), "--slots", "2", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_trains_lists_artifacts_and_runs_again(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    started = time.monotonic()
    first = _demo(tmp_path, data_dir, "--keep-running")
    assert first.stdout is not None
    out = ""
    for line in first.stdout:  # until the jobs are done and the server is left up
        out += line
        if "keeps running at" in line:
            break
    else:
        raise AssertionError(f"{out}\n{first.communicate()[1]}")
    took = time.monotonic() - started
    manifest = parse_manifest(demo_jobs.manifest_text(), source=demo_jobs.SOURCE)
    names = [j.name for j in manifest.jobs]
    for name in names:
        if name != RULED:
            assert re.search(rf"demo: {name}: completed in \d+s", out), out
    # The plateau rule stopped its job, and the demo says so.
    stop_line = (rf"demo: {RULED}: stopped by rule 'flat' at step (\d+) "
                 rf"\(val_loss [\d.e-]+, best [\d.e-]+\) in \d+s")
    stopped_at = re.search(stop_line, out)
    assert stopped_at is not None, out
    assert f"runyard: {RULED}: stopped by rule 'flat' at step {stopped_at.group(1)}" in out
    assert f"all {len(names)} demo jobs done: {len(names) - 1} completed, 1 stopped by its " \
           "rule" in out
    assert "Artifacts (content-addressed blobs under" in out
    assert out.count("artifacts.tar.zst") == len(names)
    assert "model.pkl, result.json" in out
    url = re.search(r"UI and API at (http://127\.0\.0\.1:\d+)/", out)
    assert url is not None
    token = (data_dir / "admin-token").read_text().strip()
    with httpx.Client(base_url=url.group(1), headers={"Authorization": f"Bearer {token}"},
                      timeout=15) as http:
        runs = http.get("/v1/runs", params={"project": "demo", "limit": 100}).json()["items"]
        assert sorted(r["name"] for r in runs) == sorted(names)
        for run in runs:
            assert run["executor"] != "local", run
            snap = http.get(f"/v1/runs/{run['id']}/progress").json()["snapshot"]
            if run["name"] == RULED:
                assert (run["status"], run["termination_reason"]) == ("stopped", "rule"), run
                [flat] = http.get(f"/v1/runs/{run['id']}").json()["rules"]
                assert (flat["source"], flat["hits"]) == ("blueprint", 1)
                assert flat["last_hit"]["step"] == int(stopped_at.group(1))
                assert flat["last_hit"]["tag"] == "val_loss"
                assert 0 < snap["step"] < snap["total_steps"]  # stopped well before the end
            else:
                assert run["status"] == "completed", run
                assert snap["step"] == snap["total_steps"] > 0  # progress went all the way
            tags = {t["tag"] for t in http.get(f"/v1/runs/{run['id']}/metrics/tags")
                    .json()["items"]}
            assert "val_accuracy" in tags
            arts = http.get(f"/v1/runs/{run['id']}/artifacts").json()["items"]
            bundle = next(a for a in arts if a["name"] == "artifacts.tar.zst")
            assert http.get(f"/v1/blobs/{bundle['sha256']}").content[:4] == b"\x28\xb5\x2f\xfd"
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    print(f"first demo: jobs done after {took:.1f} s")

    # Again on the same data dir: the completed jobs are trained again, as new runs.
    second = _demo(tmp_path, data_dir)
    out2, err2 = second.communicate(timeout=240)
    assert second.returncode == 0, out2 + err2
    assert f"{len(names)} demo jobs queued ({len(names)} of them again, as new runs)" in out2
    assert f"all {len(names)} demo jobs done: {len(names) - 1} completed, 1 stopped" in out2
    assert "runyard: stopped" in err2 and "Traceback" not in err2


def test_demo_help() -> None:
    out = subprocess.run([sys.executable, "-m", "runyard", "demo", "--help"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    for word in ("--keep-running", "--data-dir", "--port", "scikit-learn"):
        assert word in out.stdout
