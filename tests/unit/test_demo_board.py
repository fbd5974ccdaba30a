"""The demo's words for a run a rule stopped (runyard/cli/demo_board.py)."""

from __future__ import annotations

from typing import Any

from runyard.cli.demo_board import ended_as_planned, stopped_by_rule
from runyard.client import Run


def run(status: str, reason: str | None, rules: list[dict[str, Any]] | None = None) -> Run:
    return Run.from_json({"id": "01abc", "name": "mlp", "project": "demo", "status": status,
                          "termination_reason": reason, "rules": rules or []})


FLAT = {"name": "flat", "when": "plateau", "tag": "val_loss", "then": ["stop"], "hits": 1,
        "source": "blueprint",
        "last_hit": {"rule": "flat", "tag": "val_loss", "step": 430, "value": 0.11803,
                     "best": 0.11651, "at": "2026-01-01T00:00:01.000Z"}}
TELL = {"name": "ended", "when": "status", "status": ["stopped"], "then": ["notify:team"],
        "hits": 1, "last_hit": {"rule": "ended", "status": "stopped",
                                "at": "2026-01-01T00:00:09.000Z"}}


def test_the_rule_that_stopped_a_run_is_named_with_its_evidence() -> None:
    got = run("stopped", "rule", [TELL, FLAT])  # a notifying rule's later hit is not the cause
    assert stopped_by_rule(got) == \
        "stopped by rule 'flat' at step 430 (val_loss 0.118, best 0.1165)"
    nan = {**FLAT, "name": "diverged", "when": "nan",
           "last_hit": {"tag": "loss", "step": 50, "value": "NaN", "at": "x"}}
    assert stopped_by_rule(run("stopped", "rule", [nan])) == \
        "stopped by rule 'diverged' at step 50 (loss NaN)"
    assert stopped_by_rule(run("stopped", "rule")) == "stopped by a rule"
    assert stopped_by_rule(run("stopped", "stopped", [FLAT])) is None
    assert stopped_by_rule(run("completed", "completed", [FLAT])) is None


def test_completed_or_stopped_by_a_rule_is_as_planned() -> None:
    assert ended_as_planned(run("completed", "completed"))
    assert ended_as_planned(run("stopped", "rule", [FLAT]))
    assert not ended_as_planned(run("stopped", "stopped"))
    assert not ended_as_planned(run("failed", "rule", [FLAT]))
    assert not ended_as_planned(run("failed", "user_error"))
