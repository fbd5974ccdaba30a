"""A blueprint's ``rules`` in the manifest: parsed, normalised, and bad ones reported with the
file, line and key."""

from __future__ import annotations

import pytest

from runyard import errors
from runyard.manifest import parse_manifest

GOOD = '''
[[blueprints]]
name = "trainer"
command = ["python", "train.py", "{config_file}"]
rules = [
  {name = "diverged", when = "nan", tag = "loss", then = ["stop", "no_retry"]},
  {when = "plateau", tag = "val_loss", patience = 5, min_delta = "1%", then = ["stop"]},
]

[[jobs]]
name = "a"
blueprint = "trainer"
'''


def test_blueprint_rules_are_kept_in_its_defaults() -> None:
    manifest = parse_manifest(GOOD, source="fleet.toml")
    rules = manifest.blueprint("trainer").defaults["rules"]
    assert rules == [
        {"name": "diverged", "when": "nan", "tag": "loss", "then": ["stop", "no_retry"]},
        {"name": "plateau-val_loss", "when": "plateau", "tag": "val_loss", "patience": 5,
         "min_delta": "1%", "then": ["stop"]}]
    assert "rules" not in manifest.job("a").to_run_request()


def test_bad_rules_name_file_line_and_key() -> None:
    text = GOOD.replace('min_delta = "1%"', 'min_delta = "200%"').replace(
        'tag = "loss"', 'tag = "loss", pattern = "x"')
    with pytest.raises(errors.ManifestError) as info:
        parse_manifest(text, source="fleet.toml")
    found = {(i["field"], i["line"]) for i in info.value.errors}
    assert ("blueprints[0].rules[0].pattern", 6) in found
    assert ("blueprints[0].rules[1].min_delta", 7) in found
    assert info.value.errors[0]["text"].startswith("fleet.toml:6: blueprints[0].rules[0]")
    with pytest.raises(errors.ManifestError) as info:
        parse_manifest(GOOD.replace("rules = [", "rules = 3 #[").replace(
            "  {name", "#").replace("  {when", "#").replace("]\n\n[[jobs", "\n[[jobs"))
    assert info.value.errors[0]["field"] == "blueprints[0].rules"
