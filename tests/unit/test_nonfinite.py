"""The one spelling of NaN and the infinities on the wire."""

from __future__ import annotations

import json
import math

import pytest

from runyard import nonfinite


@pytest.mark.parametrize(("value", "wire"), [
    (math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity"),
    (1.5, 1.5), (0, 0), (None, None), (True, True),
])
def test_encode(value: object, wire: object) -> None:
    assert nonfinite.encode(value) == wire


@pytest.mark.parametrize(("wire", "value"), [
    ("-Infinity", -math.inf), ("Infinity", math.inf), (2, 2.0), (0.5, 0.5),
    (True, None), ("0.5", None), ("nan", None), (None, None), ([1], None),
])
def test_decode(wire: object, value: float | None) -> None:
    assert nonfinite.decode(wire) == value


def test_decode_nan() -> None:
    assert math.isnan(nonfinite.decode("NaN"))  # type: ignore[arg-type]


def test_to_wire_is_deep_and_strict_json() -> None:
    obj = {"a": [math.nan, (math.inf, {"b": -math.inf})], 3: 1.0, "s": "NaN"}
    wire = nonfinite.to_wire(obj)
    assert wire == {"a": ["NaN", ["Infinity", {"b": "-Infinity"}]], "3": 1.0, "s": "NaN"}
    json.dumps(wire, allow_nan=False)


def test_every_spelling_decodes_to_what_encodes_it() -> None:
    for text, value in nonfinite.SPECIALS.items():
        assert nonfinite.encode(value) == text
        back = nonfinite.decode(text)
        assert back == value or (math.isnan(value) and math.isnan(back))  # type: ignore[arg-type]
