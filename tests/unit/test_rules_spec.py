"""Rule objects: every condition read and normalised, and every bad field named."""

from __future__ import annotations

from typing import Any

import pytest

from runyard import errors
from runyard.rules import spec

GOOD = [
    {"name": "diverged", "when": "nan", "tag": "loss", "then": ["stop", "no_retry"]},
    {"name": "flat", "when": "plateau", "tag": "val_loss", "mode": "min", "patience": 5,
     "min_delta": 0.001, "then": ["stop", "notify:team"]},
    {"name": "high", "when": "threshold", "tag": "loss", "op": ">", "value": 10,
     "for_points": 3, "then": ["stop"]},
    {"name": "oom", "when": "log", "pattern": "CUDA out of memory",
     "then": ["no_retry", "notify:team"]},
    {"name": "ended", "when": "status", "status": ["completed", "failed", "lost"],
     "then": ["notify:team"]},
    {"name": "stuck", "when": "stalled", "after_s": 600, "then": ["notify:team"]},
    {"name": "long", "when": "runtime", "max_s": 86400, "then": ["stop"]},
]


@pytest.mark.parametrize("data", GOOD, ids=[g["name"] for g in GOOD])
def test_the_wire_examples_round_trip(data: dict[str, Any]) -> None:
    rule = spec.parse_rule(data)
    assert rule.to_dict() == {**data, **({"value": 10.0} if "value" in data else {}),
                              **({"min_delta": 0.001} if "min_delta" in data else {}),
                              **({"after_s": 600.0} if "after_s" in data else {}),
                              **({"max_s": 86400.0} if "max_s" in data else {})}
    assert spec.parse_rule(rule.to_dict()) == rule


def test_defaults_and_relative_min_delta() -> None:
    rule = spec.parse_rule({"when": "plateau", "tag": "val/loss", "min_delta": "1.5%"})
    assert rule.name == "plateau-val_loss" and rule.patience == spec.DEFAULT_PATIENCE
    assert rule.min_delta == pytest.approx(0.015) and rule.min_delta_relative
    assert rule.to_dict()["min_delta"] == "1.5%"
    nan = spec.parse_rule({"when": "nan"})
    assert nan.tag == "*" and nan.name == "nan-any" and nan.then == ()
    assert spec.parse_rule({"when": "nan", "then": ["stop", "stop"]}).then == ("stop",)


@pytest.mark.parametrize("data, field, words", [
    ({"when": "sometimes"}, "rules[0].when", "unknown condition"),
    ({"when": "threshold", "tag": "loss", "op": "!=", "value": 1}, "rules[0].op", "one of"),
    ({"when": "threshold", "tag": "loss", "op": ">"}, "rules[0].value", "required"),
    ({"when": "threshold", "tag": "loss", "op": ">", "value": "ten"}, "rules[0].value",
     "number"),
    ({"when": "threshold", "tag": "*", "op": ">", "value": 1}, "rules[0].tag", "only for nan"),
    ({"when": "plateau"}, "rules[0].tag", "required"),
    ({"when": "plateau", "tag": "x" * 65}, "rules[0].tag", "1 to 64"),
    ({"when": "plateau", "tag": "a\nb"}, "rules[0].tag", "control"),
    ({"when": "plateau", "tag": "l", "mode": "lowest"}, "rules[0].mode", "min or max"),
    ({"when": "plateau", "tag": "l", "patience": -1}, "rules[0].patience", "from 0"),
    ({"when": "plateau", "tag": "l", "patience": True}, "rules[0].patience", "integer"),
    ({"when": "plateau", "tag": "l", "min_delta": "150%"}, "rules[0].min_delta", "below 100"),
    ({"when": "plateau", "tag": "l", "min_delta": -0.1}, "rules[0].min_delta", ">= 0"),
    ({"when": "log", "pattern": "(unclosed"}, "rules[0].pattern", "not a regular expression"),
    ({"when": "log", "pattern": r"(a)\1"}, "rules[0].pattern", "backreferences"),
    ({"when": "log", "pattern": "(?=a)b"}, "rules[0].pattern", "lookaround"),
    ({"when": "log", "pattern": ""}, "rules[0].pattern", "1 to 500"),
    ({"when": "log", "pattern": "x", "stream": "stdin"}, "rules[0].stream", "one of"),
    ({"when": "status", "status": ["finished"]}, "rules[0].status[0]", "unknown status"),
    ({"when": "status", "status": ["claimed"]}, "rules[0].status[0]", "unknown status"),
    ({"when": "status", "status": ["failed"], "then": ["stop"]}, "rules[0].then[0]",
     "only tells"),
    ({"when": "stalled", "after_s": 0}, "rules[0].after_s", "above 0"),
    ({"when": "runtime"}, "rules[0].max_s", "required"),
    ({"when": "runtime", "max_s": 10, "eta": "yes"}, "rules[0].eta", "true or false"),
    ({"when": "nan", "then": ["explode"]}, "rules[0].then[0]", "unknown action"),
    ({"when": "nan", "then": ["notify:"]}, "rules[0].then[0]", "notify:<channel>"),
    ({"when": "nan", "then": "stop"}, "rules[0].then", "list of actions"),
    ({"when": "nan", "pattern": "x"}, "rules[0].pattern", "unknown key"),
    ({"when": "nan", "name": "-bad"}, "rules[0].name", "letters"),
    ("nan", "rules[0]", "rule object"),
])
def test_bad_rules_name_the_field(data: Any, field: str, words: str) -> None:
    with pytest.raises(errors.ValidationError) as info:
        spec.parse_rules([data])
    assert info.value.field == field, info.value.message
    assert words in info.value.message


def test_rule_lists() -> None:
    assert spec.parse_rules(None) == []
    with pytest.raises(errors.ValidationError) as info:
        spec.parse_rules([{"when": "nan"}, {"when": "nan"}])
    assert info.value.field == "rules[1].name" and "duplicate" in info.value.message
    with pytest.raises(errors.ValidationError) as info:
        spec.parse_rules([{"when": "nan", "name": f"r{i}"} for i in range(spec.MAX_RULES + 1)])
    assert info.value.field == "rules"
    with pytest.raises(errors.ValidationError):
        spec.parse_rules({"when": "nan"})
