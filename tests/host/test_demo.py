"""`musket demo` runs the main job end to end: a day of use counted, a power cut survived."""

import io

from rich.console import Console

from musket import demo


def test_demo_counts_the_appliances_day_and_survives_a_power_cut(tmp_path):
    out = io.StringIO()
    figures = demo.run(tmp_path, Console(file=out, width=200))
    assert figures["day_errors"] == [] and figures["cut_errors"] == []
    brews, litres = figures["counted"]
    want_brews, want_litres = figures["expected"]
    assert want_brews > 0 and want_litres > 0
    assert int(brews) == want_brews
    assert round(float(litres), 3) == round(want_litres, 3)
    assert figures["cut_reasons"][0] == "power_cut" and figures["cut_reasons"][-1] == "span_end"
    first, second = figures["boot_lines"][-2:]
    assert "boot #1" in first and "boot #2" in second
    assert "counters on flash" in out.getvalue()
