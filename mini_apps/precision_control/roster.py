"""Roster intake (名单下发) of a campaign: a CSV/XLSX upload, an API push, or a roster built from the platform's own
family-doctor residents.

Columns (first row the header, order free, extra columns ignored; the English key is accepted as a header too):

| header | key | required | content |
|---|---|---|---|
| 姓名 | name | yes | at most 50 characters |
| 身份证号 (身份证号码) | id_number | yes | 18-character GB 11643 number, checksum verified; `x` accepted |
| 手机号 (联系电话, 手机号码) | phone | no | 11-digit mobile number |
| 现住址 (住址) | address | no | at most 300 characters |
| 行政区划代码 (区划代码) | division_code | yes | 6, 9 or 12 digits, inside the campaign's owner's area when known |
| 类别 (人员类别) | category | if the campaign lists categories | one of them; otherwise free, ≤ 40 characters |
| 来源 | source | no | where the person came from (发热门诊, 协查 …), ≤ 100 characters |
| 优先级 | priority | no | routine or urgent (普通 / 紧急); routine by default |

The rules:
- Every row is checked on its own; a bad row is reported (row number, field key, reason; never the value, so the
  report carries no personal data) and the good rows go in.
- Deduplicated by a keyed hash of the ID number within the campaign: a row whose person is already on the roster,
  or appeared earlier in the same file, is counted under `duplicates` and not added. A re-upload of the same file
  adds nothing. Only within-file duplicates are listed in the report (pointing at the earlier row).
- The hash is HMAC under the app's lookup key with the context `control.id_number`, not the residents' context:
  the hash stays after the campaign's retention ends (it is the roster's unique key), and under its own context it
  cannot be matched against the resident table then. The link to a family-doctor resident (`resident_id`) is
  found while the ID number is at hand, by computing the residents' hash (`family_doctor.service.id_hashes`).
- One transaction per import: the import row, the persons (in chunks of `BATCH`: COPY on PostgreSQL, Core
  executemany on SQLite; identifying fields encrypted with masked copies, as residents are) and the audit record
  commit together or not at all. Then the new persons are handed to dispatch (an active campaign only; a draft's
  roster is dispatched on activation).
- Nothing is taken in once the campaign's retention has passed (China date), even before the nightly retention
  job has anonymised it.
- Per-row Python work is kept to parsing, one HMAC for the roster (plus one per lookup key for the residents' link)
  and, for new persons only, four encryptions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql

from mini_apps.family_doctor import idcard
from mini_apps.family_doctor import rekey as rekey_fd
from mini_apps.family_doctor import service as family_doctor
from mini_apps.family_doctor.importer import read_rows
from mini_apps.family_doctor.models import TAGS, Contract, FamilyDoctorTeam, Resident
from mini_apps.precision_control import retention, service
from mini_apps.precision_control.models import PRIORITIES, Campaign, CampaignPerson, RosterImport
from org_sync.classify import uscc_kind
from org_sync.models import OrgNode
from workbench import audit, db, privacy
from workbench.auth.principal import Principal
from workbench.errors import ApiError

log = logging.getLogger(__name__)

BATCH = 2000
MAX_PUSH = 5000
MAX_UPLOAD = 200 * 1024 * 1024
MAX_REJECTS = 10_000  # kept in the report; `rejected` still counts them all
HASH_CONTEXT = "control.id_number"
RESIDENT_ID_CONTEXT = rekey_fd.ID_CONTEXT  # what residents' ID numbers are hashed and encrypted under
COLUMNS = {
    "name": ("姓名",),
    "id_number": ("身份证号", "身份证号码"),
    "phone": ("手机号", "联系电话", "手机号码"),
    "address": ("现住址", "住址"),
    "division_code": ("行政区划代码", "区划代码"),
    "category": ("类别", "人员类别"),
    "source": ("来源",),
    "priority": ("优先级",),
}
LABELS = {key: names[0] for key, names in COLUMNS.items()}
REQUIRED_COLUMNS = ("name", "id_number", "division_code")
DIVISION = re.compile(r"^\d{6}(\d{3}|\d{6})?$")
MOBILE = re.compile(r"^1\d{10}$")
PRIORITY_VALUES = {**{key: key for key in PRIORITIES}, **{label: key for key, label in PRIORITIES.items()}}
# Digits of the division code that identify an owner of each level (province 2, city 4, county 6).
PREFIX_BY_LEVEL = {"province_commission": 2, "city_commission": 4, "county_bureau": 6}


Good = tuple[str, str, dict[str, Any]]  # (roster hash, normalised ID number, cleaned values)


@dataclass
class Intake:
    """What an import found so far: the counts and the per-row report. Good rows stream through in chunks, so a
    million-row file is never held as checked rows all at once (only their hashes, for within-file duplicates)."""

    rows: int = 0
    added: int = 0
    duplicates: int = 0
    rejected: int = 0
    linked: int = 0
    problems: int = 0
    rejects: list[dict[str, Any]] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)  # roster hash → first row carrying it

    def reject(self, row: int, key: str, message: str) -> None:
        """Report one problem of a row (a row may have several; `rejected` counts rows, see `_check`)."""
        self.problems += 1
        if len(self.rejects) < MAX_REJECTS:
            self.rejects.append({"row": row, "field": key, "message": message})


# -- checking rows ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    """What a row is checked against, fixed per campaign."""

    categories: frozenset[str]
    division_prefix: str | None  # the owner's division prefix, when its node carries an organ credit code
    on: date
    ring: privacy.FieldKeyring


def rules_for(session: orm.Session, campaign: Campaign) -> Rules:
    owner = session.get(OrgNode, campaign.owner_node_id)
    prefix = None
    if owner is not None and owner.code and uscc_kind(owner.code) == "organ" and owner.level in PREFIX_BY_LEVEL:
        prefix = owner.code[2 : 2 + PREFIX_BY_LEVEL[owner.level]]
    return Rules(frozenset(campaign.categories or ()), prefix, family_doctor.today(), privacy.keyring())


def _check(number: int, cells: Mapping[str, Any], rules: Rules, intake: Intake) -> tuple[str, dict] | None:
    """(normalised ID number, values) of a good row; a bad one is reported field by field and gives None."""
    before = intake.problems
    name = str(cells.get("name") or "").strip()
    if not name:
        intake.reject(number, "name", "姓名不能为空")
    elif len(name) > 50:
        intake.reject(number, "name", "姓名不能超过50个字")
    parsed = None
    raw_id = str(cells.get("id_number") or "")
    if not raw_id.strip():
        intake.reject(number, "id_number", "身份证号不能为空")
    else:
        try:
            parsed = idcard.parse(raw_id, rules.on)
        except idcard.InvalidIdNumber as exc:
            intake.reject(number, "id_number", str(exc))
    phone = str(cells.get("phone") or "").replace(" ", "").replace("-", "")
    if phone and not MOBILE.match(phone):
        intake.reject(number, "phone", "手机号须为11位数字")
    address = str(cells.get("address") or "").strip()
    if len(address) > 300:
        intake.reject(number, "address", "现住址不能超过300个字")
    division = str(cells.get("division_code") or "").strip()
    if not division:
        intake.reject(number, "division_code", "行政区划代码不能为空")
    elif not DIVISION.match(division) or int(division[:2]) not in idcard.PROVINCES:
        intake.reject(number, "division_code", "行政区划代码须为6位、9位或12位数字，且前两位为有效的省级代码")
    elif rules.division_prefix and not division.startswith(rules.division_prefix):
        intake.reject(number, "division_code", "行政区划代码不在本专项任务的管辖范围内")
    category = str(cells.get("category") or "").strip()
    if rules.categories:
        if not category:
            intake.reject(number, "category", "类别不能为空")
        elif category not in rules.categories:
            intake.reject(number, "category", f"类别须为：{'、'.join(sorted(rules.categories))}")
    elif len(category) > 40:
        intake.reject(number, "category", "类别不能超过40个字")
    source = str(cells.get("source") or "").strip()
    if len(source) > 100:
        intake.reject(number, "source", "来源不能超过100个字")
    raw_priority = str(cells.get("priority") or "").strip()
    priority = PRIORITY_VALUES.get(raw_priority or "routine")
    if priority is None:
        intake.reject(number, "priority", "优先级须为 routine（普通）或 urgent（紧急）")
    if intake.problems != before or parsed is None:
        intake.rejected += 1
        return None
    values = {
        "name": name,
        "phone": phone or None,
        "address": address or None,
        "division_code": division,
        "category": category,
        "priority": priority,
        "source_note": source or None,
    }
    return parsed.number, values


def id_hash(number: str, ring: privacy.FieldKeyring | None = None) -> str:
    """The roster's keyed hash of an ID number (see the module docstring for why not the residents' one)."""
    return privacy.lookup_hash(number, ring or privacy.keyring(), context=HASH_CONTEXT)


def _hashing_ring(ring: privacy.FieldKeyring) -> privacy.FieldKeyring:
    """The keyring with its current lookup key only: what is stored is hashed under that one, and
    `privacy.lookup_hash` would otherwise compute (and drop) one HMAC per older key for every row."""
    return dataclasses.replace(ring, lookup_keys=ring.lookup_keys[:1])


def take_rows(rows: Iterable[tuple[int, Mapping[str, Any]]], rules: Rules, intake: Intake) -> Iterator[list[Good]]:
    """Check every (row number, cells); yield the first good row of each person, in chunks of `BATCH`."""
    seen = intake.seen
    lookup = privacy.lookup_hash
    ring = _hashing_ring(rules.ring)
    chunk: list[Good] = []
    for number, cells in rows:
        intake.rows += 1
        checked = _check(number, cells, rules, intake)
        if checked is None:
            continue
        id_number, values = checked
        key = lookup(id_number, ring, context=HASH_CONTEXT)
        first = seen.get(key)
        if first is not None:
            intake.duplicates += 1
            intake.reject(number, "id_number", f"身份证号与第{first}行重复，未重复添加")
            continue
        seen[key] = number
        chunk.append((key, id_number, values))
        if len(chunk) == BATCH:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# -- reading files and pushes -----------------------------------------------------------------------------------


def _header_map(header: list[Any]) -> dict[str, int]:
    names = [str(cell).strip() for cell in header]
    positions: dict[str, int] = {}
    for key, aliases in COLUMNS.items():
        for index, name in enumerate(names):
            if name in aliases or name == key:
                positions[key] = index
                break
    missing = [LABELS[key] for key in REQUIRED_COLUMNS if key not in positions]
    if missing:
        raise ApiError("validation_error", f"缺少必需的列：{'、'.join(missing)}", status=422, field="file")
    return positions


def file_rows(filename: str, content: bytes) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number as the user sees it, cells by key) of every non-empty data row of a CSV or XLSX file."""
    rows = read_rows(filename, content)
    header = next(rows, None)
    if header is None:
        raise ApiError("validation_error", "文件为空", status=422, field="file")
    positions = list(_header_map(header[1]).items())
    for number, raw in rows:
        if not any(cell not in ("", None) for cell in raw):
            continue
        width = len(raw)
        yield number, {key: raw[index] if index < width else "" for key, index in positions}


# -- writing ----------------------------------------------------------------------------------------------------


def _chunks(items: list[Any], size: int = BATCH) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _among(session: orm.Session, column: Any, values: list[str]) -> sa.ColumnElement[bool]:
    """`column IN values`; on PostgreSQL as `= ANY(array)`: one parameter instead of thousands, which psycopg and
    the server otherwise spend most of a chunk's lookup time parsing."""
    if session.get_bind().dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam("values", values, type_=postgresql.ARRAY(sa.String)))
    return column.in_(values)


def _drop_existing(session: orm.Session, campaign_id: int, chunk: list[Good], intake: Intake) -> list[Good]:
    """The chunk without persons already on the roster (under the current lookup key or a previous one)."""
    stored = set(
        session.scalars(
            sa.select(CampaignPerson.id_hash).where(
                CampaignPerson.campaign_id == campaign_id,
                _among(session, CampaignPerson.id_hash, [good[0] for good in chunk]),
            )
        )
    )
    ring = privacy.keyring()
    if len(ring.lookup_keys) > 1:
        # LOOKUP_KEYS rotated and the roster not yet re-hashed: the same person may be stored under an older hash.
        older = {
            h: good[0]
            for good in chunk
            if good[0] not in stored
            for h in privacy.lookup_hashes(good[1], ring, context=HASH_CONTEXT)[1:]
        }
        if older:
            stored.update(
                older[h]
                for h in session.scalars(
                    sa.select(CampaignPerson.id_hash).where(
                        CampaignPerson.campaign_id == campaign_id,
                        _among(session, CampaignPerson.id_hash, list(older)),
                    )
                )
            )
    if not stored:
        return chunk
    intake.duplicates += len(stored)
    return [good for good in chunk if good[0] not in stored]


def _resident_links(session: orm.Session, chunk: list[Good]) -> dict[str, int]:
    """roster hash → family-doctor resident id, by the residents' own hash of the same ID number."""
    ring, lookup = privacy.keyring(), privacy.lookup_hashes
    # What `family_doctor.id_hashes` computes, with the keyring fetched once per chunk rather than per person.
    by_resident_hash = {h: good[0] for good in chunk for h in lookup(good[1], ring, context=RESIDENT_ID_CONTEXT)}
    stmt = sa.select(Resident.id_hash, Resident.id).where(_among(session, Resident.id_hash, list(by_resident_hash)))
    rows = session.execute(stmt)
    return {by_resident_hash[resident_hash]: resident_id for resident_hash, resident_id in rows}


# The columns `_person_rows` fills, in its tuples' order (COPY's column list on PostgreSQL).
PERSON_COLUMNS = (
    "campaign_id",
    "import_id",
    "id_hash",
    "id_cipher",
    "name_cipher",
    "phone_cipher",
    "address_cipher",
    "name_masked",
    "id_masked",
    "phone_masked",
    "division_code",
    "category",
    "priority",
    "source_note",
    "resident_id",
    "created_at",
)
COPY_PERSONS = f"COPY control_persons ({', '.join(PERSON_COLUMNS)}) FROM STDIN"


def _person_rows(
    campaign_id: int, import_id: int, chunk: list[Good], links: Mapping[str, int], ring: privacy.FieldKeyring
) -> Iterator[tuple[Any, ...]]:
    """The chunk's persons as rows of `PERSON_COLUMNS`: identifying fields encrypted, with masked copies. A
    generator: on PostgreSQL the server inserts the rows already streamed while the next ones are encrypted."""
    encrypt = privacy.encrypt_field
    mask_name, mask_id, mask_mobile = privacy.mask_name, privacy.mask_id_number, privacy.mask_mobile
    now = db.utcnow()
    for key, number, values in chunk:
        name, phone, address = values["name"], values["phone"], values["address"]
        yield (
            campaign_id,
            import_id,
            key,
            encrypt(number, ring, context="control.id_number"),
            encrypt(name, ring, context="control.name"),
            encrypt(phone, ring, context="control.phone"),
            encrypt(address, ring, context="control.address"),
            mask_name(name),
            mask_id(number),
            mask_mobile(phone),
            values["division_code"],
            values["category"],
            values["priority"],
            values["source_note"],
            links.get(key),
            now,
        )


@contextlib.contextmanager
def _persons_writer(conn: sa.Connection) -> Iterator[Callable[[Iterable[tuple[Any, ...]]], None]]:
    """A function writing rows of `PERSON_COLUMNS` in the session's transaction.

    PostgreSQL: `COPY … FROM STDIN` on the session's own driver connection, so the rows are part of the same
    transaction (all-or-nothing holds); about 2.5× faster than executemany (7.6 s against 19.6 s per 200,000
    persons, docs/BENCHMARKS.md), whose time goes to per-row parameter handling. A unique violation (another
    import of the campaign inserted the same person meanwhile) is raised as SQLAlchemy's IntegrityError, as
    executemany raises it, for `_run` to answer 409. SQLite: Core executemany."""
    if conn.dialect.name != "postgresql":
        insert = sa.insert(CampaignPerson)

        def executemany(rows: Iterable[tuple[Any, ...]]) -> None:
            conn.execute(insert, [dict(zip(PERSON_COLUMNS, row, strict=True)) for row in rows])

        yield executemany
        return

    import psycopg

    def copy(rows: Iterable[tuple[Any, ...]]) -> None:
        try:
            with cursor.copy(COPY_PERSONS) as stream:
                write_row = stream.write_row
                for row in rows:
                    write_row(row)
        except psycopg.errors.IntegrityError as exc:
            raise sa.exc.IntegrityError(COPY_PERSONS, None, exc) from exc

    with conn.connection.driver_connection.cursor() as cursor:
        yield copy


def _write(
    principal: Principal,
    session: orm.Session,
    campaign: Campaign,
    chunks: Iterable[list[Good]],
    intake: Intake,
    *,
    source: str,
    filename: str | None,
    sha256: str | None,
) -> RosterImport:
    """Import row, persons and audit in the session's transaction (the caller commits)."""
    ring = privacy.keyring()
    row = RosterImport(
        campaign_id=campaign.id, source=source, filename=filename, sha256=sha256, created_by=principal.actor
    )
    session.add(row)
    session.flush()
    with _persons_writer(session.connection()) as write:
        for chunk in chunks:
            new = _drop_existing(session, campaign.id, chunk, intake)
            if not new:
                continue
            links = _resident_links(session, new)
            write(_person_rows(campaign.id, row.id, new, links, ring))
            intake.added += len(new)
            intake.linked += len(links)
    if intake.rows == 0 and source != "family_doctor":
        raise ApiError("validation_error", "没有数据行", status=422, field="file" if source == "upload" else "items")
    row.rows, row.added, row.duplicates, row.rejected = intake.rows, intake.added, intake.duplicates, intake.rejected
    row.rejects = intake.rejects
    audit.record(
        principal,
        "control.roster.import",
        resource_type="control_campaign",
        resource_id=campaign.id,
        node_id=campaign.owner_node_id,
        detail={
            "import_id": row.id,
            "source": source,
            "rows": intake.rows,
            "added": intake.added,
            "duplicates": intake.duplicates,
            "rejected": intake.rejected,
            "linked_residents": intake.linked,
        },
        session=session,
    )
    return row


def _run(
    principal: Principal,
    session: orm.Session,
    campaign: Campaign,
    chunks: Iterable[list[Good]],
    intake: Intake,
    *,
    source: str,
    filename: str | None = None,
    sha256: str | None = None,
) -> dict[str, Any]:
    """Write the import in one transaction, then hand its persons to dispatch."""
    campaign_id = campaign.id
    try:
        row = _write(principal, session, campaign, chunks, intake, source=source, filename=filename, sha256=sha256)
        session.commit()
    except ApiError:  # the file itself is unusable (no header, no rows): nothing is kept
        session.rollback()
        raise
    except sa.exc.IntegrityError:
        # Another import of the same campaign inserted one of these persons meanwhile (the unique hash held).
        session.rollback()
        log.warning("roster import collided with another import", extra={"rows": intake.rows})
        message = "同一专项任务的另一批名单正在导入，请稍后重试；本次未写入任何数据"
        raise ApiError("conflict", message, status=409) from None
    except Exception:
        session.rollback()
        log.exception("roster import failed; rolled back", extra={"rows": intake.rows})
        raise ApiError("import_failed", "导入失败，已全部回滚，未写入任何数据；请稍后重试", status=500) from None
    log.info("roster import", extra={"rows": intake.rows, "result": f"added {row.added}"})
    campaign = session.get(Campaign, campaign_id)
    person_ids: list[int] | None = []
    if 0 < row.added <= service.DISPATCH_ID_LIMIT:
        person_ids = list(session.scalars(sa.select(CampaignPerson.id).where(CampaignPerson.import_id == row.id)))
    elif row.added:
        person_ids = None  # a big import: every person of the campaign without a task (see service.dispatch_new)
    dispatched = service.dispatch_new(session, campaign, person_ids)
    return {**import_report(row), "dispatch": dispatched}


def _importable(principal: Principal, session: orm.Session, campaign_id: int) -> Campaign:
    campaign, _ = service.managed_campaign(principal, session, campaign_id)
    if campaign.state == "ended":
        raise ApiError("conflict", "专项任务已结束，不能再导入名单", status=409)
    if campaign.anonymised_at is not None:
        raise ApiError("conflict", "专项任务的个人信息已按期删除，不能再导入名单", status=409)
    if campaign.retention_until < retention.china_day():
        # Retention has passed but tonight's job has not anonymised the campaign yet: persons taken in now would be
        # kept past the date the campaign promised, or wiped hours after being dispatched.
        raise ApiError("conflict", "专项任务的个人信息保留期限已过，不能再导入名单", status=409)
    return campaign


def import_file(
    principal: Principal, campaign_id: int, filename: str, content: bytes, session: orm.Session | None = None
) -> dict[str, Any]:
    """Take in an uploaded CSV or XLSX roster; returns the import's report."""
    session = session or db.session()
    campaign = _importable(principal, session, campaign_id)
    intake = Intake()
    chunks = take_rows(file_rows(filename, content), rules_for(session, campaign), intake)
    sha = hashlib.sha256(content).hexdigest()
    return _run(principal, session, campaign, chunks, intake, source="upload", filename=filename[-200:], sha256=sha)


def import_items(
    principal: Principal, campaign_id: int, items: list[Mapping[str, Any]], session: orm.Session | None = None
) -> dict[str, Any]:
    """Take in an API push of at most `MAX_PUSH` persons (row numbers in the report count from 1)."""
    if not items:
        raise ApiError("validation_error", "名单不能为空", status=422, field="items")
    if len(items) > MAX_PUSH:
        raise ApiError("validation_error", f"单次推送最多 {MAX_PUSH} 人", status=422, field="items")
    session = session or db.session()
    campaign = _importable(principal, session, campaign_id)
    intake = Intake()
    chunks = take_rows(enumerate(items, start=1), rules_for(session, campaign), intake)
    return _run(principal, session, campaign, chunks, intake, source="api")


def _resident_chunks(rows: list[Any], category: str, priority: str, intake: Intake) -> Iterator[list[Good]]:
    ring = privacy.keyring()
    hashing = _hashing_ring(ring)
    chunk: list[Good] = []
    for row in rows:
        intake.rows += 1
        id_number = privacy.decrypt_field(row.id_cipher, ring, context=RESIDENT_ID_CONTEXT)
        phone = privacy.decrypt_field(row.phone_cipher, ring, context="resident.phone")
        values = {
            "name": row.name,
            "phone": phone,
            "address": row.address or None,
            # Residents without a division code still go in: dispatch sends them to their team.
            "division_code": row.division_code or "",
            "category": category,
            "priority": priority,
            "source_note": "家庭医生签约数据",
        }
        chunk.append((id_hash(id_number, hashing), id_number, values))
        if len(chunk) == BATCH:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def import_from_family_doctor(
    principal: Principal, campaign_id: int, data: Mapping[str, Any], session: orm.Session | None = None
) -> dict[str, Any]:
    """The roster from the platform's residents on a current contract with a team of an institution in the
    campaign's subtree: those with `tag` (a key-population code or label), and with an overdue follow-up when
    `overdue_follow_up` is true. Category: `category`, else the tag's label."""
    session = session or db.session()
    campaign = _importable(principal, session, campaign_id)
    try:
        tags = family_doctor.parse_tags(data.get("tag") or "")
    except ValueError as exc:
        raise ApiError("validation_error", str(exc), status=422, field="tag") from None
    if len(tags) != 1:
        raise ApiError("validation_error", "请给出一个重点人群", status=422, field="tag")
    tag = tags[0]
    category = (data.get("category") or TAGS[tag]).strip()
    if campaign.categories and category not in campaign.categories:
        raise ApiError("validation_error", f"类别须为：{'、'.join(campaign.categories)}", status=422, field="category")
    owner = session.get(OrgNode, campaign.owner_node_id)
    stmt = (
        sa.select(Resident.id_cipher, Resident.phone_cipher, Resident.name, Resident.address, Resident.division_code)
        .join(Contract, sa.and_(Contract.resident_id == Resident.id, Contract.is_current))
        .join(FamilyDoctorTeam, FamilyDoctorTeam.id == Contract.team_id)
        .join(OrgNode, OrgNode.id == FamilyDoctorTeam.institution_id)
        .where(
            OrgNode.path.startswith(owner.path, autoescape=True),
            Contract.status == "active",
            Resident.tags.contains(f",{tag},", autoescape=True),
        )
        .order_by(Resident.id)
    )
    if data.get("overdue_follow_up"):
        stmt = stmt.where(family_doctor.overdue_follow_up_sql(family_doctor.today()))
    # Fetched whole before writing: the same connection then inserts (a county's residents with one tag).
    rows = session.execute(stmt).all()
    intake = Intake()
    chunks = _resident_chunks(rows, category, data.get("priority") or "routine", intake)
    return _run(principal, session, campaign, chunks, intake, source="family_doctor")


# -- reading imports --------------------------------------------------------------------------------------------


def import_report(row: RosterImport) -> dict[str, Any]:
    return {**service.import_view(row), "rejects": row.rejects or []}


def list_imports(principal: Principal, campaign_id: int, session: orm.Session | None = None) -> dict[str, Any]:
    session = session or db.session()
    campaign = service.visible_campaign(principal, session, campaign_id)
    rows = session.scalars(
        sa.select(RosterImport).where(RosterImport.campaign_id == campaign.id).order_by(RosterImport.id.desc())
    ).all()
    return {"items": [service.import_view(row) for row in rows], "total": len(rows)}


def get_import(
    principal: Principal, campaign_id: int, import_id: int, session: orm.Session | None = None
) -> dict[str, Any]:
    session = session or db.session()
    campaign = service.visible_campaign(principal, session, campaign_id)
    row = session.scalar(
        sa.select(RosterImport).where(RosterImport.id == import_id, RosterImport.campaign_id == campaign.id)
    )
    if row is None:
        raise ApiError("not_found", f"导入记录 {import_id} 不存在", status=404)
    return import_report(row)
