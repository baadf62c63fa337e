"""The benchmark's table keeps a run that did not finish (the overloaded end of the curve)."""

from __future__ import annotations

from bench.report import format_table


def test_a_run_that_did_not_finish_is_a_row_with_its_reason() -> None:
    runs = [{"path": "pcmu", "calls": 400, "error": "no 'READY' line from pid 7 within 140 s"}]
    table = format_table(runs).splitlines()
    assert table[2].split()[:2] == ["pcmu", "400"]
    assert "did not run to the end: no 'READY' line" in table[2]
