"""Plain-text tables for the command line: one renderer, so every table lines up the same way.

Cells are printed whole (never cut: a reason cut short can change a figure, e.g. ``p=0.062`` read as
``p=0.0``); numbers are formatted by the caller, so a column shows exactly the digits its name promises.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from tabulate import tabulate

MISSING = "-"


def render_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: Sequence[str] | None = None) -> str:
    """``rows`` under ``headers``, columns padded to their widest cell; ``None`` shows as a dash.

    ``align`` gives each column's alignment ("left", "right", "center"); by default text is left-aligned.
    """
    cells = [[MISSING if value is None else str(value) for value in row] for row in rows]
    return tabulate(
        cells,
        headers=list(headers),
        tablefmt="simple",
        disable_numparse=True,  # the caller chose the digits; tabulate must not re-format them
        colalign=tuple(align) if align else None,
    )


def print_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], align: Sequence[str] | None = None, out: TextIO | None = None
) -> None:
    print(render_table(headers, rows, align), file=out)
