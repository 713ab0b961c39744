"""How changestream's objects behave in Python's everyday tools: repr, pickle, ``to_dict()``,
notebook HTML, ``help()``, an ImportError that names the extra to install, a refused broker
connection logged once, at WARNING, and nothing logged by closing a stream or `group_lag`."""

from __future__ import annotations

import inspect
import logging
import pickle
import sys
from collections.abc import Callable
from decimal import Decimal

import changestream
import pytest
from cdc import CdcProducer
from changestream import Change, ChangeBatch, ChangeStream
from items_cdc import item, produce

pytestmark = [pytest.mark.timeout(60, func_only=True)]

OpenStream = Callable[..., ChangeStream]


@pytest.fixture
def update(cdc: CdcProducer, topic: str, open_stream: OpenStream) -> Change:
    """An update of one item's price, read back."""
    old, new = item(4), item(4, price="40.00")
    produce(cdc, topic, [("u", old, new)])
    with open_stream(topic, until="end") as stream:
        (change,) = list(stream)
    return change


def test_repr_names_before_and_after(update: Change) -> None:
    text = repr(update)
    assert text.startswith("Change(op='update', table='items', key={'id': 4}, before={'id': 4,")
    assert "price': Decimal('4.04')" in text.split("after=")[0]
    assert "after={'id': 4, 'name': 'item 4', 'price': Decimal('40.00')" in text
    assert text.endswith(", partition=0, offset=0)")


def test_change_pickles_and_has_to_dict(update: Change) -> None:
    copy = pickle.loads(pickle.dumps(update))
    assert isinstance(copy, Change)
    assert copy.to_dict() == update.to_dict()
    assert repr(copy) == repr(update)
    as_dict = update.to_dict()
    assert list(as_dict) == [
        "op", "table", "key", "before", "after", "source", "transaction",
        "tombstone", "topic", "partition", "offset", "timestamp",
    ]  # fmt: skip
    assert as_dict["after"] == item(4, price="40.00").python()
    assert as_dict["source"]["table"] == "items"
    assert as_dict["timestamp"] == update.timestamp is not None


def test_misuse_raises_pythons_own_exceptions(update: Change) -> None:
    restore, state = update.__reduce__()
    with pytest.raises(ValueError, match='not a change operation: "upsert!"'):
        restore("upsert!", *state[1:])
    with pytest.raises(TypeError, match="topics must be a str or a sequence of str"):
        ChangeStream(42, bootstrap_servers="127.0.0.1:9", schema_registry_url="http://127.0.0.1:9")  # type: ignore[arg-type]


def test_change_html_shows_what_an_update_changed(update: Change) -> None:
    html = update._repr_html_()
    assert "<b>update</b> items" in html
    assert "<th>price</th><td><code>Decimal(&#x27;4.04&#x27;)</code></td><td>→</td>" in html
    assert "Decimal(&#x27;40.00&#x27;)" in html
    assert "<th>name</th>" not in html  # unchanged columns are left out


def test_batch_html_shows_the_schema_and_first_rows(
    cdc: CdcProducer, topic: str, open_stream: OpenStream
) -> None:
    produce(cdc, topic, [("c", None, item(n)) for n in range(1, 13)])
    with open_stream(topic, until="end") as stream:
        (batch,) = list(stream.batches())
    html = batch._repr_html_()
    assert "ChangeBatch <b>items</b>" in html
    assert "12 rows" in html
    assert "price<br><small>Decimal128(38, 2)</small>" in html
    assert "<td>1.01</td>" in html
    assert "<td>10.10</td>" in html
    assert "<td>11.11</td>" not in html  # ten rows shown
    assert "first 10 of 12 rows" in html


def test_stream_repr_names_topics_group_and_state(stack: dict[str, str], topic: str) -> None:
    stream = ChangeStream(
        [topic],
        bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
        schema_registry_url=stack["SCHEMA_REGISTRY_URL"],
        group_id="reprs",
    )
    assert repr(stream) == f'ChangeStream(topics=["{topic}"], group_id="reprs", state="open")'
    stream.close()
    assert repr(stream).endswith('state="closed")')


def test_help_documents_every_class_method_and_argument() -> None:
    doc = ChangeStream.__doc__ or ""
    for name in inspect.signature(ChangeStream).parameters:
        assert f"``{name}``" in doc, f"ChangeStream's docstring does not document {name}"
    for cls in (Change, ChangeBatch, ChangeStream, changestream.Interval, changestream.DeadLetter):
        assert cls.__doc__, cls
        for name, member in vars(cls).items():
            if not name.startswith("_") or name in ("_repr_html_",):
                assert getattr(member, "__doc__", None), f"{cls.__name__}.{name} has no docstring"
    assert "``lag``" in (changestream.group_lag.__doc__ or "")


@pytest.mark.parametrize(
    ("method", "missing", "extra"),
    [("to_pandas", "pandas", "pandas"), ("to_pandas", "pyarrow", "pandas"),
     ("to_pyarrow", "pyarrow", "pyarrow"), ("to_polars", "polars", "polars")],
)  # fmt: skip
def test_a_missing_dataframe_library_names_the_extra(
    cdc: CdcProducer,
    topic: str,
    open_stream: OpenStream,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    missing: str,
    extra: str,
) -> None:
    produce(cdc, topic, [("c", None, item(1))])
    with open_stream(topic, until="end") as stream:
        (batch,) = list(stream.batches())
    monkeypatch.setitem(sys.modules, missing, None)  # what an uninstalled module looks like
    with pytest.raises(ImportError, match=rf"pip install 'changestream\[{extra}\]'") as raised:
        getattr(batch, method)()
    assert raised.value.name == missing
    assert f"needs {missing}" in str(raised.value)


def test_a_refused_broker_connection_is_logged_once_at_warning(
    stack: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with ChangeStream(
        "nowhere",
        bootstrap_servers="127.0.0.1:1",
        schema_registry_url=stack["SCHEMA_REGISTRY_URL"],
        group_id="unreachable",
    ) as stream:
        assert stream.poll(timeout=3) is None
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    refused = [r for r in loud if "127.0.0.1:1" in r.getMessage()]
    assert len(refused) == 1, [r.getMessage() for r in loud]
    assert refused[0].levelno == logging.WARNING
    assert "Connection refused" in refused[0].getMessage()


@pytest.mark.parametrize("group_id", [None, "quiet-close"])
def test_closing_or_dropping_a_stream_logs_nothing(
    stack: dict[str, str],
    cdc: CdcProducer,
    topic: str,
    open_stream: OpenStream,
    caplog: pytest.LogCaptureFixture,
    group_id: str | None,
) -> None:
    produce(cdc, topic, [("c", None, item(i)) for i in range(3)])
    caplog.set_level(logging.DEBUG)
    with open_stream(topic, group_id=group_id) as stream:
        assert next(stream).offset == 0
    dropped = open_stream(topic, group_id=group_id)
    next(dropped)
    del dropped
    # group_lag's own consumer closes the same way.
    (lag,) = changestream.group_lag(
        topic, group_id="quiet-lag", bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"]
    )
    assert lag["lag"] == 3
    loud = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == []


def test_decimal_values_survive_pickle_exactly(update: Change) -> None:
    copy = pickle.loads(pickle.dumps(update, protocol=pickle.HIGHEST_PROTOCOL))
    assert copy.after["price"] == Decimal("40.00")
    assert str(copy.after["price"]) == "40.00"
