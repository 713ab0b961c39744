"""How a ``Change`` shows itself in a notebook (``Change._repr_html_``)."""

from __future__ import annotations

import html
from typing import Any


def cell(value: Any) -> str:
    """A table cell showing ``repr(value)``."""
    return f"<td><code>{html.escape(repr(value))}</code></td>"


def change_html(change: Any) -> str:
    """An HTML table: op, table and key; for an update the changed columns, before → after,
    otherwise the row."""
    where = f"{change.topic} [{change.partition}] @ {change.offset}"
    head = (
        f"<b>{html.escape(change.op)}</b> {html.escape(str(change.table))} "
        f"key <code>{html.escape(repr(change.key))}</code> "
        f"<small>({html.escape(where)})</small>"
    )
    before, after = change.before, change.after
    rows: list[str] = []
    if change.op == "update" and isinstance(before, dict) and isinstance(after, dict):
        columns = "<tr><th>column</th><th>before</th><th></th><th>after</th></tr>"
        for name, value in after.items():
            if name not in before or before[name] != value:
                old = before.get(name)
                rows.append(
                    f"<tr><th>{html.escape(name)}</th>{cell(old)}<td>→</td>{cell(value)}</tr>"
                )
        if not rows:
            rows.append('<tr><td colspan="4">no column changed</td></tr>')
    else:
        row = after if after is not None else before
        columns = "<tr><th>column</th><th>value</th></tr>"
        if isinstance(row, dict):
            rows = [f"<tr><th>{html.escape(str(k))}</th>{cell(v)}</tr>" for k, v in row.items()]
        elif row is not None:
            rows = [f"<tr><th>value</th>{cell(row)}</tr>"]
    return f"<div>{head}<table>{columns}{''.join(rows)}</table></div>"
