"""Bulk import of residents and contracts from the public-health system's export (CSV or .xlsx).

Columns (first row is the header; order free; extra columns ignored; aliases in brackets):

| header | required | content |
|---|---|---|
| 姓名 | yes | resident's name, at most 50 characters |
| 身份证号 (身份证号码) | yes | 18-digit GB 11643 number; lower-case x accepted |
| 联系电话 (手机号码, 手机号) | no | mobile or landline |
| 现住址 (家庭住址, 住址) | no | address, at most 300 characters |
| 行政区划代码 (区划代码) | no | 6 or 12 digits (统计用区划代码) |
| 重点人群 | no | labels or codes separated by 、 , ， ; ； or / (see below) |
| 签约团队 (团队名称) | yes | the team's name (unique among the caller's teams) or its numeric id |
| 服务包 | no | 基础包 (default) or a named package code |
| 签约日期 (签约开始日期) | yes | YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD (or an Excel date) |
| 到期日期 (签约结束日期) | yes | same formats; not earlier than one year after 签约日期 (both days inclusive) |
| 钉钉用户ID | no | the resident's DingTalk userid, if they have one |

重点人群 labels: 老年人, 儿童, 孕产妇, 高血压, 糖尿病, 残疾人, 严重精神障碍, 结核病, 计划生育特殊家庭 (or their codes in
`models.TAGS`).

CSV files are read as UTF-8 (with or without BOM), else GB18030 (what Excel on Chinese Windows saves).

The rules:
- Every row is validated first: fields, ID checksum, duplicates within the file (the first row with an ID number
  wins, later ones are rejected naming it), the team (unknown or outside the caller's scope), dates and the
  one-year term, and against the database (a resident whose active contract still runs at the new start).
- Dry run: the report only. Otherwise the good rows are written and the bad ones reported ("the good rows in,
  every bad row reported"), in **one** transaction of Core inserts in batches: a failure while writing rolls back
  everything ("nothing half-imported") and the import answers 500 with nothing written.
- Idempotent: a resident is the same resident by ID-number hash, a contract the same contract by resident, team
  and start date; a re-import of the same file inserts nothing and reports the rows as unchanged. An existing
  resident's stored details (name, phone, address, tags) are left as they are: the import adds contracts, it does
  not overwrite what a team corrected by hand.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from mini_apps.family_doctor import chats, idcard, service
from mini_apps.family_doctor.models import Contract, FamilyDoctorTeam, Resident
from workbench import audit, db
from workbench.auth.principal import Principal
from workbench.errors import ApiError

log = logging.getLogger(__name__)

BATCH = 1000
MAX_ROWS = 200_000
COLUMNS = {
    "name": ("姓名",),
    "id_number": ("身份证号", "身份证号码"),
    "phone": ("联系电话", "手机号码", "手机号"),
    "address": ("现住址", "家庭住址", "住址"),
    "division_code": ("行政区划代码", "区划代码"),
    "tags": ("重点人群",),
    "team": ("签约团队", "团队名称"),
    "package": ("服务包",),
    "start_date": ("签约日期", "签约开始日期"),
    "end_date": ("到期日期", "签约结束日期"),
    "dingtalk_userid": ("钉钉用户ID",),
}
LABELS = {key: names[0] for key, names in COLUMNS.items()}
REQUIRED = ("name", "id_number", "team", "start_date", "end_date")
PHONE = re.compile(r"^(\+?\d{1,4}-)?\d{3,4}-?\d{7,8}$|^1\d{10}$")
DIVISION = re.compile(r"^\d{6}(\d{6})?$")
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d")


@dataclass
class Reject:
    row: int
    field: str
    reason: str


@dataclass
class Good:
    row: int
    data: dict[str, Any]
    number: idcard.IdNumber
    id_hash: str
    team_id: int


@dataclass
class Report:
    dry_run: bool
    total_rows: int = 0
    rejects: list[Reject] = field(default_factory=list)
    good: list[Good] = field(default_factory=list)
    created_residents: int = 0
    created_contracts: int = 0
    unchanged: int = 0
    plan: _Plan | None = None

    def as_dict(self) -> dict[str, Any]:
        rejected_rows = len({reject.row for reject in self.rejects})
        return {
            "dry_run": self.dry_run,
            "committed": not self.dry_run,
            "total_rows": self.total_rows,
            "accepted_rows": self.total_rows - rejected_rows,
            "rejected_rows": rejected_rows,
            "created_residents": self.created_residents,
            "created_contracts": self.created_contracts,
            "unchanged_rows": self.unchanged,
            "rejects": [{"row": r.row, "field": r.field, "reason": r.reason} for r in self.rejects],
        }


# -- reading ----------------------------------------------------------------------------------------------------


def _cell(value: Any) -> str | date:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a number typed into Excel (a division code); an 18-digit ID would have lost digits
    return str(value).strip()


def read_rows(filename: str, data: bytes) -> Iterator[tuple[int, list[Any]]]:
    """(row number as the user sees it, cells) for every row, the header first (row 1)."""
    if filename.lower().endswith(".xlsx"):
        import openpyxl

        try:
            book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises zipfile, KeyError, … on a file that is not a workbook
            raise ApiError("validation_error", "无法读取 Excel 文件（须为 .xlsx）", status=422, field="file") from exc
        sheet = book.worksheets[0]
        for number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield number, [_cell(value) for value in row]
        book.close()
        return
    if not filename.lower().endswith(".csv"):
        raise ApiError("validation_error", "只支持 .csv 或 .xlsx 文件", status=422, field="file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("gb18030")
        except UnicodeDecodeError as exc:
            raise ApiError("validation_error", "CSV 文件编码无法识别（请用 UTF-8）", status=422, field="file") from exc
    for number, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        yield number, [cell.strip() for cell in row]


def _header_map(header: list[Any]) -> dict[str, int]:
    positions: dict[str, int] = {}
    names = [str(cell).strip() for cell in header]
    for key, aliases in COLUMNS.items():
        for index, name in enumerate(names):
            if name in aliases:
                positions[key] = index
                break
    missing = [LABELS[key] for key in REQUIRED if key not in positions]
    if missing:
        raise ApiError("validation_error", f"缺少必需的列：{'、'.join(missing)}", status=422, field="file")
    return positions


def _date(value: str | date) -> date | None:
    if isinstance(value, date):
        return value
    if len(value) == 10 and value[4] == "-":
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    return None


# -- validation -------------------------------------------------------------------------------------------------


def _team_index(principal: Principal, session: orm.Session) -> tuple[dict[str, int | None], set[int]]:
    """Team names → id among the caller's active teams (None when two of them share the name), and their ids."""
    rows = session.execute(
        sa.select(FamilyDoctorTeam.id, FamilyDoctorTeam.name).where(
            FamilyDoctorTeam.id.in_(service.visible_team_ids(principal)), FamilyDoctorTeam.active.is_(True)
        )
    ).all()
    by_name: dict[str, int | None] = {}
    for team_id, name in rows:
        by_name[name] = None if name in by_name else team_id
    return by_name, {team_id for team_id, _ in rows}


def _validate_row(
    number: int, cells: Mapping[str, Any], teams: tuple[dict[str, int | None], set[int]], on: date
) -> tuple[Good | None, list[Reject]]:
    rejects: list[Reject] = []

    def bad(key: str, reason: str) -> None:
        rejects.append(Reject(number, LABELS[key], reason))

    for key in REQUIRED:
        if cells.get(key) in ("", None):
            bad(key, f"{LABELS[key]}不能为空")
    data: dict[str, Any] = {}
    if name := cells.get("name"):
        if len(str(name)) > 50:
            bad("name", "姓名不能超过50个字")
        data["name"] = str(name)
    parsed = None
    if cells.get("id_number"):
        try:
            parsed = idcard.parse(str(cells["id_number"]), on)
        except idcard.InvalidIdNumber as exc:
            bad("id_number", str(exc))
    if phone := str(cells.get("phone") or "").replace(" ", ""):
        if not PHONE.match(phone):
            bad("phone", "联系电话格式不正确")
        data["phone"] = phone
    address = str(cells.get("address") or "")
    if len(address) > 300:
        bad("address", "现住址不能超过300个字")
    data["address"] = address
    if division := str(cells.get("division_code") or ""):
        if not DIVISION.match(division):
            bad("division_code", "行政区划代码须为6位或12位数字")
        data["division_code"] = division
    try:
        data["tags"] = service.parse_tags(str(cells.get("tags") or ""))
    except ValueError as exc:
        bad("tags", str(exc))
    team_id = None
    if team := str(cells.get("team") or ""):
        by_name, ids = teams
        if team in by_name:
            team_id = by_name[team]
            if team_id is None:
                bad("team", f"团队名称“{team}”重名，请填写团队编号")
        elif team.isdigit() and int(team) in ids:
            team_id = int(team)
        else:
            bad("team", f"签约团队“{team}”不存在或不在您的管理范围内")
    package = str(cells.get("package") or "") or service.BASIC_PACKAGE
    if len(package) > 40:
        bad("package", "服务包代码不能超过40个字")
    data["package"] = package
    start = end = None
    if cells.get("start_date"):
        start = _date(cells["start_date"])
        if start is None:
            bad("start_date", "签约日期格式不正确（应为 YYYY-MM-DD）")
    if cells.get("end_date"):
        end = _date(cells["end_date"])
        if end is None:
            bad("end_date", "到期日期格式不正确（应为 YYYY-MM-DD）")
    if start and end and (problem := service.period_error(start, end)):
        bad("end_date", problem)
    data["start_date"], data["end_date"] = start, end
    if userid := str(cells.get("dingtalk_userid") or ""):
        data["dingtalk_userid"] = userid[:64]
    if rejects or parsed is None or team_id is None:
        return None, rejects
    return Good(number, data, parsed, "", team_id), []


def validate(principal: Principal, filename: str, content: bytes, session: orm.Session, report: Report) -> None:
    """Fill `report` with the good rows and the rejects of the file, checking the database as well."""
    rows = read_rows(filename, content)
    header = next(rows, None)
    if header is None:
        raise ApiError("validation_error", "文件为空", status=422, field="file")
    positions = _header_map(header[1])
    teams = _team_index(principal, session)
    on = service.today()
    seen: dict[str, int] = {}
    for number, raw in rows:
        if not any(cell not in ("", None) for cell in raw):
            continue
        report.total_rows += 1
        if report.total_rows > MAX_ROWS:
            raise ApiError("validation_error", f"单个文件最多 {MAX_ROWS} 行", status=422, field="file")
        cells = {key: raw[index] if index < len(raw) else "" for key, index in positions.items()}
        good, rejects = _validate_row(number, cells, teams, on)
        # Duplicates: the first row carrying a valid ID number claims it, even if another of its fields is bad.
        raw_id = str(cells.get("id_number") or "").strip().upper()
        if raw_id and (good is not None or not any(r.field == LABELS["id_number"] for r in rejects)):
            try:
                key = service.id_hash((good.number if good is not None else idcard.parse(raw_id, on)).number)
            except idcard.InvalidIdNumber:
                key = None
            if key is not None:
                if key in seen:
                    rejects.append(Reject(number, LABELS["id_number"], f"身份证号与第{seen[key]}行重复"))
                    good = None
                else:
                    seen[key] = number
                    if good is not None:
                        good.id_hash = key
        report.rejects.extend(rejects)
        if good is not None:
            report.good.append(good)
    _check_database(session, report)


def _chunks(items: list[Any], size: int = BATCH) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class _Plan:
    new_residents: list[Good] = field(default_factory=list)
    # (good row, existing resident id, current contract id or None, active contract id ending before the start)
    new_contracts: list[tuple[Good, int | None]] = field(default_factory=list)
    close_active: list[int] = field(default_factory=list)
    uncurrent: list[int] = field(default_factory=list)


def _check_database(session: orm.Session, report: Report) -> _Plan:
    """Match the good rows against stored residents and contracts: unchanged, new, or rejected."""
    plan = _Plan()
    existing: dict[str, int] = {}
    for chunk in _chunks([good.id_hash for good in report.good]):
        rows = session.execute(sa.select(Resident.id_hash, Resident.id).where(Resident.id_hash.in_(chunk)))
        existing.update((key, resident_id) for key, resident_id in rows)
    # Residents stored under a previous lookup key (LOOKUP_KEYS rotated, `rekey` not yet run) are the same people.
    older = {
        h: good.id_hash
        for good in report.good
        if good.id_hash not in existing
        for h in service.id_hashes(good.number.number)[1:]
    }
    for chunk in _chunks(list(older)):
        rows = session.execute(sa.select(Resident.id_hash, Resident.id).where(Resident.id_hash.in_(chunk)))
        existing.update((older[key], resident_id) for key, resident_id in rows)
    contracts: dict[int, list[Any]] = {}
    for chunk in _chunks(list(existing.values())):
        for row in session.execute(
            sa.select(
                Contract.id,
                Contract.resident_id,
                Contract.team_id,
                Contract.start_date,
                Contract.end_date,
                Contract.status,
                Contract.is_current,
            ).where(Contract.resident_id.in_(chunk))
        ):
            contracts.setdefault(row.resident_id, []).append(row)
    kept: list[Good] = []
    for good in report.good:
        resident_id = existing.get(good.id_hash)
        if resident_id is None:
            plan.new_residents.append(good)
            plan.new_contracts.append((good, None))
            kept.append(good)
            continue
        theirs = contracts.get(resident_id, [])
        start = good.data["start_date"]
        if any(c.team_id == good.team_id and c.start_date == start for c in theirs):
            report.unchanged += 1
            kept.append(good)
            continue
        active = next((c for c in theirs if c.status == "active"), None)
        current = next((c for c in theirs if c.is_current), None)
        if active is not None and active.end_date >= start:
            report.rejects.append(Reject(good.row, LABELS["id_number"], "该居民已有有效签约，不能重复签约"))
            continue
        if current is not None and current.start_date >= start:
            report.rejects.append(Reject(good.row, LABELS["start_date"], "签约日期早于该居民现有签约的开始日期"))
            continue
        if active is not None:
            plan.close_active.append(active.id)
        if current is not None:
            plan.uncurrent.append(current.id)
        plan.new_contracts.append((good, resident_id))
        kept.append(good)
    report.good = kept
    report.rejects.sort(key=lambda r: r.row)
    report.plan = plan
    return plan


# -- writing ----------------------------------------------------------------------------------------------------


def _insert_batch(conn: sa.Connection, stmt: sa.Insert, rows: list[dict[str, Any]]) -> None:
    """One batch of a bulk insert, as a DB-API executemany. No RETURNING on purpose: with it, SQLAlchemy renders
    one multi-row VALUES statement per batch whose 15,000 placeholders psycopg re-parses every time (two thirds of
    the import's time); plain executemany sends one prepared statement in pipeline mode. A seam for tests."""
    conn.execute(stmt, rows)


def _reserve_ids(conn: sa.Connection, residents: list[Good]) -> dict[str, int]:
    """PostgreSQL: take the new residents' ids from the sequence up front (one query). Looking them up by hash
    after the insert instead costs a sequential scan per batch there: inside the import's transaction the planner
    still believes the freshly filled table is empty (91 s of a 100 s import in a test on an empty database)."""
    if conn.dialect.name != "postgresql" or not residents:
        return {}
    reserved = conn.scalars(
        sa.text("SELECT nextval(pg_get_serial_sequence('family_doctor_residents', 'id')) FROM generate_series(1, :n)"),
        {"n": len(residents)},
    ).all()
    return {good.id_hash: resident_id for good, resident_id in zip(residents, reserved, strict=True)}


def _write(principal: Principal, session: orm.Session, report: Report) -> None:
    plan = report.plan
    assert plan is not None
    conn = session.connection()
    actor = principal.actor
    ids = _reserve_ids(conn, plan.new_residents)
    insert_residents = sa.insert(Resident)
    for chunk in _chunks(plan.new_residents):
        values = []
        for good in chunk:
            row = service.resident_values(good.data, good.number, actor)
            row["id_hash"] = good.id_hash
            if ids:
                row["id"] = ids[good.id_hash]
            values.append(row)
        _insert_batch(conn, insert_residents, values)
    if not ids:
        # SQLite hands out ids as it inserts; its planner always uses the unique index on id_hash for this.
        for chunk in _chunks([good.id_hash for good in plan.new_residents]):
            rows = conn.execute(sa.select(Resident.id_hash, Resident.id).where(Resident.id_hash.in_(chunk)))
            ids.update((key, resident_id) for key, resident_id in rows)
    for chunk in _chunks(plan.close_active):
        conn.execute(sa.update(Contract).where(Contract.id.in_(chunk)).values(status="expired"))
    for chunk in _chunks(plan.uncurrent):
        conn.execute(sa.update(Contract).where(Contract.id.in_(chunk)).values(is_current=False))
    insert_contracts = sa.insert(Contract)
    for chunk in _chunks(plan.new_contracts):
        values = [
            {
                "resident_id": resident_id if resident_id is not None else ids[good.id_hash],
                "team_id": good.team_id,
                "package": good.data["package"],
                "start_date": good.data["start_date"],
                "end_date": good.data["end_date"],
                "status": "active",
                "is_current": True,
                "previous_id": None,
                "source": "import",
                "created_by": actor,
            }
            for good, resident_id in chunk
        ]
        _insert_batch(conn, insert_contracts, values)
    report.created_residents = len(plan.new_residents)
    report.created_contracts = len(plan.new_contracts)


def _analyze(session: orm.Session, report: Report) -> None:
    """PostgreSQL: refresh the planner's statistics after a big import. Until autovacuum gets to it the planner
    takes the tables for as small as before, and the next import's lookups by ID hash turn into sequential scans
    (a re-import of 50,000 rows right after the first took 93 s instead of 4)."""
    if session.get_bind().dialect.name != "postgresql" or report.created_residents + report.created_contracts < 1000:
        return
    try:
        session.execute(sa.text("ANALYZE family_doctor_residents, family_doctor_contracts"))
        session.commit()
    except sa.exc.DBAPIError:  # not the tables' owner: autovacuum will do it later
        session.rollback()
        log.warning("could not analyze the family-doctor tables after an import", exc_info=True)


def run(
    principal: Principal, filename: str, content: bytes, *, dry_run: bool, session: orm.Session | None = None
) -> dict[str, Any]:
    """Validate the file and, unless `dry_run`, write its good rows in one transaction; returns the report."""
    session = session or db.session()
    report = Report(dry_run=dry_run)
    validate(principal, filename, content, session, report)
    summary = {"total_rows": report.total_rows, "rejected": len({r.row for r in report.rejects})}
    if dry_run:
        session.rollback()
        audit.record(principal, "resident.import", resource_type="resident", detail={**summary, "dry_run": True})
        return report.as_dict()
    try:
        _write(principal, session, report)
        audit.record(
            principal,
            "resident.import",
            resource_type="resident",
            detail={
                **summary,
                "dry_run": False,
                "created_residents": report.created_residents,
                "created_contracts": report.created_contracts,
                "unchanged": report.unchanged,
            },
            session=session,
        )
        chats.schedule_contract_teams(  # the teams signed to, and those whose residents moved away
            session, report.plan.uncurrent, *{good.team_id for good, _ in report.plan.new_contracts}
        )
        session.commit()
    except Exception:
        session.rollback()
        log.exception("family-doctor import failed; rolled back", extra={"rows": report.total_rows})
        audit.record(
            principal,
            "resident.import",
            resource_type="resident",
            outcome="failed",
            detail={**summary, "dry_run": False},
        )
        raise ApiError("import_failed", "导入失败，已全部回滚，未写入任何数据；请稍后重试", status=500) from None
    _analyze(session, report)
    return report.as_dict()
