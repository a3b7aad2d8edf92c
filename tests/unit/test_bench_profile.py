"""``bench.profile.summarise`` on py-spy's raw (folded) output, including what it really writes."""

from __future__ import annotations

from bench.profile import summarise


def test_folded_stacks_are_summed_and_odd_lines_skipped(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text(
        "main (app.py:1);work (app.py:10) 3\n"
        "main (app.py:1);work (app.py:12);leaf (lib.py:5) 1\n"
        # a frame showing a string argument with a character str.splitlines would break at
        "main (app.py:1);parse (lib.py:9) \x1c(x 2\n"
        "main (app.py:1);wor",  # the spy stopped mid-write
        encoding="utf-8",
    )
    result = summarise(raw, top=10)
    assert result["samples"] == 6
    inclusive = dict(result["inclusive"])
    assert inclusive["main (app.py)"] == 1.0
    assert inclusive["work (app.py)"] == round(4 / 6, 3)  # two lines of one function merged
    assert dict(result["self"])["leaf (lib.py)"] == round(1 / 6, 3)
