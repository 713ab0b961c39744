"""The example notebook (examples/changestream.ipynb) executed headless by nbclient against the
stack, its outputs checked."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from uuid import uuid4

import nbformat
import pytest
from cdc import CdcProducer
from items_cdc import item, produce
from nbclient import NotebookClient

pytestmark = [pytest.mark.timeout(240, func_only=True)]

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "changestream.ipynb"


def outputs(cell: Any, kind: str) -> str:
    """The text of a code cell's outputs of one MIME type (or stream), joined."""
    texts = []
    for output in cell.outputs:
        if output.output_type == "stream" and kind == "stream":
            texts.append(output.text)
        elif kind in output.get("data", {}):
            texts.append(output.data[kind])
    return "\n".join(texts)


def test_notebook_runs_headless_and_shows_changes_batches_and_lag(
    stack: dict[str, str], cdc: CdcProducer, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [item(n) for n in range(1, 13)]
    updated = item(3, price="333.33")
    produce(
        cdc,
        topic,
        [("c", None, row) for row in rows] + [("u", rows[2], updated), ("d", rows[0], None)],
    )
    group = f"notebook-{uuid4().hex[:8]}"
    for key, value in {
        "KAFKA_BOOTSTRAP_SERVERS": stack["KAFKA_BOOTSTRAP_SERVERS"],
        "SCHEMA_REGISTRY_URL": stack["SCHEMA_REGISTRY_URL"],
        "CHANGESTREAM_TOPIC": topic,
        "CHANGESTREAM_GROUP": group,
    }.items():
        monkeypatch.setenv(key, value)
    notebook = nbformat.read(NOTEBOOK, as_version=4)

    NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for cell in code:
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.outputs
    _, read, shown, frame, lag = code
    assert "14 changes" in outputs(read, "stream")
    assert outputs(read, "text/plain") == "{'insert': 12, 'update': 1, 'delete': 1}"
    # The progress bar ended at 14 of 14, on one line that rewrote itself (no flood).
    assert "14/14" in outputs(read, "stream")

    html = outputs(shown, "text/html")
    assert html.count("<b>insert</b> items") == 2
    # The update shows only what changed, before → after.
    update = html.split("<b>update</b>")[1]
    assert "<th>price</th><td><code>Decimal(&#x27;3.03&#x27;)</code></td><td>→</td>" in update
    assert "Decimal(&#x27;333.33&#x27;)" in update
    assert "<th>name</th>" not in update

    batch_html = outputs(frame, "text/html").split("</div>")[0]
    assert "ChangeBatch <b>items</b>" in batch_html
    assert "price<br><small>Decimal128(38, 2)</small>" in batch_html
    assert "<td>333.33</td>" in batch_html or "14 rows" in batch_html
    table = next(o for o in frame.outputs if o.output_type == "execute_result").data["text/plain"]
    assert table.split("\n")[0].split() == ["_op", "id", "name", "price", "_offset"]
    assert table.split("\n")[-1].split()[:2] == ["13", "delete"]  # the last of 14 rows

    text = outputs(lag, "stream")
    assert f"lag while reading: {{('{topic}', 0): 9}}" in text
    group_lag = " ".join(outputs(lag, "text/plain").split())
    assert "'partition': 0, 'committed': 5, 'start': 0, 'end': 14, 'lag': 9" in group_lag
    assert os.environ["CHANGESTREAM_GROUP"] == group
