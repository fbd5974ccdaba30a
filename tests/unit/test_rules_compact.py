"""The compact form a person types, and the errors it gives for bad input."""

from __future__ import annotations

from typing import Any

import pytest

from runyard import errors
from runyard.rules import compact, spec


@pytest.mark.parametrize("text, rule", [
    ("nan loss -> stop,no_retry", {"when": "nan", "tag": "loss", "then": ["stop", "no_retry"]}),
    ("nan", {"when": "nan"}),
    ("threshold loss > 10 for=3 -> stop",
     {"when": "threshold", "tag": "loss", "op": ">", "value": 10, "for_points": 3,
      "then": ["stop"]}),
    ("threshold loss>=1.5", {"when": "threshold", "tag": "loss", "op": ">=", "value": 1.5}),
    ("plateau val_loss patience=5 min_delta=0.001 -> stop,notify:team",
     {"when": "plateau", "tag": "val_loss", "patience": 5, "min_delta": 0.001,
      "then": ["stop", "notify:team"]}),
    ("plateau acc mode=max min_delta=1% warmup=100 name=acc-flat",
     {"when": "plateau", "tag": "acc", "mode": "max", "min_delta": "1%", "min_step": 100,
      "name": "acc-flat"}),
    ('log "CUDA out of memory" -> no_retry',
     {"when": "log", "pattern": "CUDA out of memory", "then": ["no_retry"]}),
    ("status completed,failed -> notify:team",
     {"when": "status", "status": ["completed", "failed"], "then": ["notify:team"]}),
    ("stalled after=10m -> notify:team", {"when": "stalled", "after_s": 600.0,
                                          "then": ["notify:team"]}),
    ("stalled", {"when": "stalled"}),
    ("runtime 24h eta -> stop", {"when": "runtime", "max_s": 86400.0, "eta": True,
                                 "then": ["stop"]}),
    ("runtime max=90s", {"when": "runtime", "max_s": 90.0}),
])
def test_compact_forms(text: str, rule: dict[str, Any]) -> None:
    assert compact.parse(text) == rule
    spec.parse_rule(rule)


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("-> stop", "no condition"),
    ("sometimes loss", "unknown condition 'sometimes'"),
    ("threshold loss 10", "TAG OP VALUE"),
    ("threshold loss > ten", "expected a number"),
    ("plateau a b", "one TAG"),
    ('log "unclosed', "close the quotes"),
    ("log CUDA out of memory", "quote it"),
    ("stalled after=soon", "duration"),
    ("runtime 1h 2h", "MAX duration"),
    ("nan loss -> stop,,fail", "separated by commas"),
    ("nan loss -> explode", "unknown action 'explode'"),
    ("plateau loss patience=-2", "patience"),
    ("status done", "unknown status or reason 'done'"),
])
def test_bad_compact_forms_say_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(errors.ValidationError) as info:
        compact.parse(text)
    assert words in info.value.message, info.value.message
