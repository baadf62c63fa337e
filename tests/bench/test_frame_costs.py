"""bench/frame_costs.py runs and prints one figure per path, signal and piece."""

from __future__ import annotations

import pytest

from bench.frame_costs import main


def test_it_prints_a_figure_for_every_row(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--repeats", "1", "--seconds", "0.2"])
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines[1:] if line.strip()]
    assert len(rows) == 9 + 4 + 2 + 4
    assert any("speech (espeak-ng)" in row for row in rows)
    for row in rows:
        assert float(row.split()[-1]) > 0, row
    handoff = [row.split("handoff", 1)[1] for row in rows if row.startswith("handoff")]
    for what in ("loop tick", "callback", "Inbox -> task", "asyncio.Queue -> task"):
        assert sum(what in row for row in handoff) == 1, (what, handoff)
