"""Fitting a table to the terminal: whole columns go before any word is cut."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.text import Text

from runyard.cli import fit

COLUMNS = (fit.Column("id"), fit.Column("name", cut_last=True), fit.Column("status"),
           fit.Column("progress", rank=1), fit.Column("host", rank=3),
           fit.Column("metrics", rank=2, items=True))
ROW = ["01a2513ead032345b280e7", "mlp-lr002", Text("failed (user_error)"), "45% eta 3m05s",
       "gpu-box-17", ["loss=0.25", "acc=0.9", "val_loss=0.31"]]


def shown(width: int | None, rows: list[list[fit.Cell]] | None = None) -> list[str]:
    plan = fit.layout(COLUMNS, rows or [ROW], width)
    return [COLUMNS[i].header for i in plan.shown]


def rendered(width: int | None, rows: list[list[fit.Cell]] | None = None) -> list[str]:
    table, total = fit.table(COLUMNS, rows or [ROW], width=width)
    out = io.StringIO()
    Console(file=out, width=total, soft_wrap=True, color_system=None).print(table)
    return out.getvalue().splitlines()


def test_everything_fits_a_wide_terminal() -> None:
    assert shown(200) == ["id", "name", "status", "progress", "host", "metrics"]
    lines = rendered(200)
    assert "loss=0.25 acc=0.9 val_loss=0.31" in lines[1] and "…" not in lines[1]


def test_metrics_shrink_by_whole_items_before_columns_go() -> None:
    natural = fit.layout(COLUMNS, [ROW], None).total
    lines = rendered(natural - 10)
    assert all(len(line) <= natural - 10 for line in lines)
    assert "loss=0.25 acc=0.9 …" in lines[1] and "gpu-box-17" in lines[1]


@pytest.mark.parametrize("width", [80, 72, 60, 55])
def test_columns_go_in_rank_order_and_the_kept_ones_stay_whole(width: int) -> None:
    lines = rendered(width)
    assert all(len(line) <= width for line in lines), lines
    row = lines[1]
    assert "01a2513ead032345b280e7" in row and "mlp-lr002" in row
    assert "failed (user_error)" in row
    headers = shown(width)
    # host (rank 3) leaves before metrics (2), which leaves before progress (1)
    order = ["metrics", "progress"]
    assert "host" not in headers
    kept = [h for h in order if h in headers]
    assert kept == order[len(order) - len(kept):]
    for cell in ("45% eta 3m05s", "loss=0.25"):
        header = "progress" if cell.startswith("45%") else "metrics"
        assert (cell in row) == (header in headers)


def test_only_the_name_is_cut_and_only_as_the_last_resort() -> None:
    long = [*ROW[:1], "a-very-long-experiment-name-indeed", *ROW[2:]]
    lines = rendered(60, [long])
    assert all(len(line) <= 60 for line in lines), lines
    assert "failed (user_error)" in lines[1] and "01a2513ead032345b280e7" in lines[1]
    assert "a-very-long" in lines[1] and "…" in lines[1]
    assert shown(60, [long]) == ["id", "name", "status"]


def test_too_narrow_for_the_kept_columns_overflows_rather_than_cutting_status() -> None:
    lines = rendered(20)
    assert "failed (user_error)" in lines[1] and "01a2513ead032345b280e7" in lines[1]
    assert shown(20) == ["id", "name", "status"]


def test_no_width_means_every_column_and_item() -> None:
    assert shown(None) == [c.header for c in COLUMNS]
    assert "loss=0.25 acc=0.9 val_loss=0.31" in rendered(None)[1]


@pytest.mark.parametrize(("items", "width", "out"), [
    (["a=1", "b=2", "c=3"], 11, "a=1 b=2 c=3"),
    (["a=1", "b=2", "c=3"], 10, "a=1 b=2 …"),
    (["a=1", "b=2", "c=3"], 6, "a=1 …"),
    (["loss=0.25"], 9, "loss=0.25"),
    ([], 5, ""),
])
def test_shorten_items(items: list[str], width: int, out: str) -> None:
    assert fit.shorten_items(items, width) == out


@pytest.mark.parametrize(("value", "width"), [("80", 80), ("  132 ", 132), ("0", None),
                                              ("-5", None), ("wide", None), ("", None)])
def test_terminal_width_from_columns(monkeypatch: pytest.MonkeyPatch, value: str,
                                     width: int | None) -> None:
    monkeypatch.setenv("COLUMNS", value)  # pytest's stdout is not a terminal
    assert fit.terminal_width() == width
