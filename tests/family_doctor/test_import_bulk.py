"""The issue's import proof on PostgreSQL: a 50,000-row export with hundreds of bad rows of each kind — the good
rows in, every bad row reported with its reason, a re-import changes nothing, and a database failure mid-write
leaves nothing behind."""

from __future__ import annotations

import csv
import io
import time
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from mini_apps.family_doctor import idcard, importer
from mini_apps.family_doctor.models import Contract, Resident
from tests.family_doctor.conftest import World
from tests.family_doctor.test_api import HEADER, _counts, _upload

ROWS = 50_000
BAD_EACH = 300  # per kind: bad checksum, missing name, duplicate ID, unknown team, bad date, term under a year
KINDS = ("checksum", "missing", "duplicate", "team", "date", "term")


def _export(world: World) -> tuple[bytes, dict[int, str]]:
    """The CSV, and the expected reject field per bad row number (the header is row 1)."""
    rows, expected = [], {}
    bad_at = {kind: {100 + k + 160 * j for j in range(BAD_EACH)} for k, kind in enumerate(KINDS)}
    for i in range(ROWS):
        number = idcard.make(
            ("330102", "330106", "330381")[i % 3], date(1940, 1, 1) + timedelta(i % 20_000), 1 + i // 20_000
        )
        tags = "老年人、高血压" if i % 4 == 0 else ""
        row = [f"居民{i}", number, f"139{i:08d}", f"某镇某村{i}号", "330106001001", tags,
               world.team_name, "基础包", "2026-01-01", "2026-12-31"]  # fmt: skip
        line = i + 2
        if i in bad_at["checksum"]:
            row[1] = number[:17] + ("0" if number[17] != "0" else "1")
            expected[line] = "身份证号"
        elif i in bad_at["missing"]:
            row[0] = ""
            expected[line] = "姓名"
        elif i in bad_at["duplicate"]:
            row[1] = rows[i - 50][1]  # the ID of a good row 50 lines up
            expected[line] = "身份证号"
        elif i in bad_at["team"]:
            row[6] = "第九十九团队"
            expected[line] = "签约团队"
        elif i in bad_at["date"]:
            row[8] = "2026-02-30"
            expected[line] = "签约日期"
        elif i in bad_at["term"]:
            row[9] = "2026-10-31"
            expected[line] = "到期日期"
        rows.append(row)
    out = io.StringIO()
    csv.writer(out).writerows([HEADER, *rows])
    return out.getvalue().encode("utf-8"), expected


@pytest.mark.parametrize("backend", ["postgresql"])
def test_fifty_thousand_rows(tree_app, tree_client, world: World, backend, monkeypatch):
    content, expected = _export(world)
    assert len(expected) == BAD_EACH * len(KINDS)

    # A database failure half-way through the write: everything rolls back.
    calls = {"n": 0}
    real = importer._insert_batch

    def failing(conn, stmt, rows):
        calls["n"] += 1
        if calls["n"] == 60:  # after all resident batches and some contract batches
            raise sa.exc.OperationalError("INSERT", {}, Exception("connection lost"))
        return real(conn, stmt, rows)

    monkeypatch.setattr(importer, "_insert_batch", failing)
    reply = _upload(tree_client, world.doctor, content, "export.csv")
    assert reply.status_code == 500 and reply.get_json()["error"]["code"] == "import_failed"
    assert calls["n"] == 60
    assert _counts(tree_app) == (0, 0)
    monkeypatch.setattr(importer, "_insert_batch", real)

    started = time.monotonic()
    reply = _upload(tree_client, world.doctor, content, "export.csv")
    first = time.monotonic() - started
    assert reply.status_code == 200, reply.get_json()
    report = reply.get_json()
    good = ROWS - len(expected)
    assert report["total_rows"] == ROWS and report["accepted_rows"] == good
    assert report["created_residents"] == good and report["created_contracts"] == good
    assert {r["row"]: r["field"] for r in report["rejects"]} == expected
    assert all(r["reason"] for r in report["rejects"])
    assert _counts(tree_app) == (good, good)

    started = time.monotonic()
    again = _upload(tree_client, world.doctor, content, "export.csv").get_json()
    second = time.monotonic() - started
    assert again["created_residents"] == 0 and again["created_contracts"] == 0
    assert again["unchanged_rows"] == good and again["rejected_rows"] == len(expected)
    assert _counts(tree_app) == (good, good)
    with tree_app.app_context():
        from workbench import db

        session = db.session()
        assert session.scalar(sa.select(sa.func.count()).select_from(Contract).where(Contract.is_current)) == good
        assert session.scalar(sa.select(sa.func.count(sa.distinct(Resident.id_hash)))) == good
    print(f"\n50,000-row import: first {first:.1f}s, re-import {second:.1f}s")
