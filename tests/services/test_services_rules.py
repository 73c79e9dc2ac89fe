"""Rules files: the example product's file validates, and each kind of mistake is named with
its file, line and field; several mistakes are reported together."""

from __future__ import annotations

from pathlib import Path

import pytest

from musket.services import rules
from musket.services.errors import RulesError

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "services"


def test_the_documented_example_validates():
    products = rules.load_all([EXAMPLES])
    coffee = products["coffee"]
    assert [r.condition for r in coffee.rules] == [
        "counter", "consumable", "reboots", "diagnosis", "sensor_fault", "signal_below",
        "silent_hours", "data_share"]
    assert coffee.consumables["beans"].lead_time_days == 2
    assert coffee.rules[2].params == {"reboots": 3, "within_hours": 24}
    assert coffee.rules[2].line == 16  # "- name: unstable"


@pytest.mark.parametrize(("text", "message"), [
    ("product: coffee\nrules:\n  - name: a\n    when: {counter: brews}\n    do: [{sink: "
     "{path: a.jsonl}}]\n", "x.yaml:4: rules[0].when.every: missing"),
    ("product: coffee\nrules:\n  - name: a\n    when: {counter: brews, every: 0}\n    do: "
     "[{sink: {path: a.jsonl}}]\n", "x.yaml:4: rules[0].when.every: must be a number above 0"),
    ("product: coffee\nrules:\n  - name: a\n    when: {silent_hours: 2}\n    do:\n"
     "      - mail: {to: x}\n", "x.yaml:6: rules[0].do[0]: one action of: webhook"),
    ("product: coffee\nrules:\n  - name: a\n    when: {consumable: milk}\n    do: [{order: }]\n",
     "x.yaml:4: rules[0].when.consumable: no consumable 'milk'"),
    ("product: coffee\nrules:\n  - name: a\n    when: {silent_hours: 2, reboots: 3}\n    do: "
     "[{order: }]\n", "x.yaml:4: rules[0].when: needs exactly one condition"),
    ("product: coffee\nconsumables:\n  beans: {counter: brews, per_use: 0.01}\n",
     "x.yaml:3: consumables.beans.capacity: missing"),
    ("product: coffee\ntariff: {currency: euro, prices: {brews: -1}}\n",
     "x.yaml:2: tariff.prices.brews: must be a price of 0 or more"),
    ("product: coffee\nrules: [\n", "x.yaml:3: not YAML"),
    ("product: coffee\nrule: []\n", "x.yaml:2: rule: unknown section"),
    ("product: coffee\nrules:\n  - name: a\n    when: {silent_hours: 2}\n    do:\n"
     "      - sink: {path: a.txt, format: xml}\n", "x.yaml:6: rules[0].do[0].sink.format"),
])
def test_each_mistake_is_named_by_line_and_field(text, message):
    with pytest.raises(RulesError) as e:
        rules.parse(text, "x.yaml")
    assert message in str(e.value)


def test_every_problem_of_a_file_is_reported_at_once():
    text = ("product: Coffee\nrules:\n  - name: a\n    when: {counter: brews, every: x}\n"
            "    do: [{webhook: {url: ftp://h}}]\n  - name: a\n    when: {silent_hours: 1}\n"
            "    do: [{sink: {path: s.jsonl}}]\n")
    with pytest.raises(RulesError) as e:
        rules.parse(text, "x.yaml")
    text = str(e.value)
    for part in ("x.yaml:1: product", "x.yaml:4: rules[0].when.every",
                 "x.yaml:5: rules[0].do[0].webhook.url"):
        assert part in text


def test_a_product_in_two_files_is_refused(tmp_path):
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text("product: coffee\n")
    with pytest.raises(RulesError, match="also in a.yaml"):
        rules.load_all([tmp_path])
