"""CLI output written to a file or pipe is wide enough for the result tables; COLUMNS still decides."""

from __future__ import annotations

import io

from rich.table import Table

from mdmt_nas.cli.console import make_console


def _render(monkeypatch, columns: str | None) -> str:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    buf = io.StringIO()
    monkeypatch.setattr("sys.stdout", buf)  # not a terminal
    table = Table(*[f"valid AUC {i}" for i in range(8)])
    table.add_row(*["0.8240"] * 8)
    make_console().print(table)
    return buf.getvalue()


def test_piped_output_is_140_columns_and_tables_keep_their_headers(monkeypatch):
    text = _render(monkeypatch, None)
    assert max(len(line) for line in text.splitlines()) <= 140
    assert "valid AUC 7" in text and "…" not in text


def test_columns_env_wins(monkeypatch):
    text = _render(monkeypatch, "60")
    assert max(len(line) for line in text.splitlines()) <= 60 and "…" in text
