"""Read back a table the command line printed (text_tables.render_table): columns by the header's rule line,
so a test asserts on a named cell, not on spacing."""

from __future__ import annotations

import re


def read_table(text: str, first_header: str) -> list[dict[str, str]]:
    """The rows of the table in ``text`` whose first column is headed ``first_header``, as {header: cell}.

    Columns are where the rule under the headers has dashes; the last column runs to the end of the line, so a
    long cell is read whole. The table ends at a blank line or the end of the text."""
    lines = text.splitlines()
    for i, line in enumerate(lines[:-1]):
        rule = lines[i + 1]
        if line.strip().startswith(first_header) and rule.strip() and set(rule.strip()) <= {"-", " "}:
            break
    else:
        raise AssertionError(f"no table headed {first_header!r} in:\n{text}")
    starts = [m.start() for m in re.finditer(r"-+", rule)]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    headers = [line[a:b].strip() for a, b in bounds]
    rows = []
    for row in lines[i + 2 :]:
        if not row.strip():
            break
        rows.append({h: row[a:b].strip() for h, (a, b) in zip(headers, bounds, strict=True)})
    return rows


def row_where(rows: list[dict[str, str]], **cells: str) -> dict[str, str]:
    """The one row whose cells have these values."""
    found = [r for r in rows if all(r.get(k) == v for k, v in cells.items())]
    assert len(found) == 1, f"{len(found)} rows with {cells} in {rows}"
    return found[0]
