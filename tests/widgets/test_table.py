"""The kernel table: what each row shows, and rows re-sent only when they change."""

from __future__ import annotations

from pydotcompute_widgets import KernelTable
from pydotcompute_widgets._table import COLUMNS, row_cells, row_html
from tests.widgets.conftest import snapshot, telemetry


def _col(cells: tuple[str, ...], key: str) -> str:
    return cells[[k for k, _ in COLUMNS].index(key)]


def test_row_shows_every_column_of_the_issue() -> None:
    t = telemetry(
        "worker", state="FAILED", inbox_depth=3, outbox_depth=1, processed=12345,
        throughput=2500.4, latency_p50_us=4.25, latency_p99_us=80.0, dropped=2, errors=1,
        last_error="ValueError: boom", restarts=2, dead_letters=7,
        outputs_to=("detector", "archive"),
    )  # fmt: skip
    cells = row_cells(t)
    assert len(cells) == len(COLUMNS)
    assert _col(cells, "id") == "worker"
    assert _col(cells, "where") == "host · cpu"
    assert _col(cells, "state") == "FAILED"
    assert _col(cells, "inbox") == "3/64" and _col(cells, "outbox") == "1/64"
    assert _col(cells, "processed") == "12,345"
    assert _col(cells, "rate") == "2,500"
    assert (_col(cells, "p50"), _col(cells, "p99")) == ("4.2", "80.0")
    assert (_col(cells, "dropped"), _col(cells, "errors")) == ("2", "1")
    assert _col(cells, "last_error") == "ValueError: boom"
    assert _col(cells, "restarts") == "2"
    assert _col(cells, "dead") == "7"
    assert _col(cells, "next") == "detector, archive"


def test_row_names_the_device_of_a_device_kernel_and_dashes_missing_latency() -> None:
    cells = row_cells(telemetry(backend="device", device="cuda:0", throughput=0.5))
    assert _col(cells, "where") == "device · cuda:0"
    assert (_col(cells, "p50"), _col(cells, "p99")) == ("-", "-")
    assert _col(cells, "rate") == "0.5"


def test_row_html_colours_the_state_and_escapes_what_users_wrote() -> None:
    cells = row_cells(telemetry("<b>x</b>", state="ACTIVE", last_error="E: " + "<" * 100))
    out = row_html(cells)
    assert "<b>x</b>" not in out and "&lt;b&gt;x&lt;/b&gt;" in out
    assert 'data-state="ACTIVE"' in out and "background:#16a34a" in out
    assert "…" in out  # a long error is shortened in the cell ...
    assert 'title="E: ' + "&lt;" * 100 + '"' in out  # ... and complete in its tooltip


def test_update_adds_rows_and_resends_only_changed_ones() -> None:
    table = KernelTable()
    assert table.update(snapshot(telemetry("a"), telemetry("b"))) == 2
    assert list(table.root.children[1:]) == [table.lines["a"], table.lines["b"]]
    sent: list[str] = []
    for kid, row in table.rows.items():
        row.observe(lambda change, kid=kid: sent.append(kid), names="value")
    assert table.update(snapshot(telemetry("a"), telemetry("b", processed=11))) == 1
    assert sent == ["b"]
    assert table.update(snapshot(telemetry("a"), telemetry("b", processed=11))) == 0
    assert sent == ["b"]


def test_a_kernel_missing_from_later_snapshots_keeps_its_final_row() -> None:
    table = KernelTable()
    table.update(snapshot(telemetry("a", state="TERMINATED"), telemetry("b")))
    table.update(snapshot(telemetry("b", processed=99)))
    assert list(table.rows) == ["a", "b"]
    assert 'data-state="TERMINATED"' in table.rows["a"].value
    table.close()


def test_a_rows_button_opens_its_event_log_which_follows_the_events() -> None:
    table = KernelTable()
    events = ((1_700_000_000.0, "LAUNCHED"), (1_700_000_000.5, "ACTIVE"))
    table.update(snapshot(telemetry("a", events=events)))
    log = table.logs["a"]
    assert log.layout.display == "none"  # closed until its button is pressed
    assert table.toggles["a"].tooltip == "event log of a"
    table.open_log("a")
    assert log.layout.display == ""
    assert "LAUNCHED" in log.value and "ACTIVE" in log.value
    failed = (*events, (1_700_000_001.0, "failed: ValueError: <bad> job"))
    assert table.update(snapshot(telemetry("a", events=failed))) == 1  # the log only
    assert '<tr class="pdc-failed">' in log.value
    assert "failed: ValueError: &lt;bad&gt; job" in log.value
    assert table.update(snapshot(telemetry("a", events=failed))) == 0
    table.open_log("a", False)
    assert log.layout.display == "none"
    table.close()
