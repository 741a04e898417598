"""The issue's demonstration: a campaign of 100,000 persons across the `county` sandbox province (Hubei, with
Wufeng county: one county bureau, one medical community, its lead hospital and ten member institutions) dispatched
with no person lost or assigned twice, the unmatched ones queued; a re-upload of the same file changes nothing.

The path is the production one end to end: the tree comes in by a full sync from a sandbox of `county` scale; the
service areas, the family-doctor residents, the campaign, the upload and the activation go through the HTTP API.
What each row should become is computed independently from the file (a longest-prefix walk over the areas written
here, in Python) and compared with the stored tasks, group by group.

PostgreSQL only: at this size the test is about the production database's set-based dispatch (its planner, the
`ANALYZE` the engine runs, `ON CONFLICT`) and takes a minute or two there; SQLite's behaviour is covered by the
small rosters of test_dispatch.py and test_roster.py, and 100,000 rows twice would only add minutes to the suite.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
import redis as redis_lib
import sqlalchemy as sa

from mini_apps.family_doctor import idcard
from mini_apps.precision_control.models import CampaignPerson, ControlTask, ControlTaskEvent
from org_sync.full_sync import run_full_sync
from org_sync.models import OrgNode
from tests.conftest import _build_app, reset_postgres
from tests.precision_control.conftest import campaign_body
from tests.support.auth import bearer, sign_in
from tests.support.sandbox import SandboxProcess
from tests.support.tree import Tree
from workbench import close_app, db
from workbench.auth.principal import INSTITUTION_LEVELS

API = "/api/precision-control"
PERSONS = 100_000
BAD_ROWS = 100  # a wrong check digit: rejected
REPEATED_ROWS = 100  # a person already earlier in the file: counted as a duplicate
RESIDENTS = 40  # rows whose person is a family-doctor resident of a team
COUNTY = "420528"  # 五峰土家族自治县
OUTSIDE = "420502003"  # 宜昌市西陵区: inside the province, no county of the tree answers for it
COUNTY_UNMAPPED = COUNTY + "999"  # a township of the county nobody maps: the county's own queue


@pytest.fixture
def county_app(postgres_url: str, redis_url: str, tmp_path):
    """An app on PostgreSQL holding the `county` sandbox's tree, fully synced, with its sandbox."""
    with SandboxProcess("--scale", "county", "--seed", "3", "--qps", "1000") as sandbox:
        reset_postgres(postgres_url)
        redis_lib.Redis.from_url(redis_url).flushdb()
        env = {
            "SANDBOX_PORT": str(sandbox.port),
            "WORKBENCH_VAR_DIR": str(tmp_path),
            "DINGTALK_QPS": "1000",
            "DATABASE_URL": postgres_url,
            "REDIS_URL": redis_url,
        }
        app = _build_app(env)
        try:
            with app.app_context():
                assert run_full_sync().state == "succeeded"
            yield app, sandbox, Tree(sandbox.admin("GET", "truth").json())
        finally:
            close_app(app)


def _ok(reply, status: int = 200) -> dict:
    assert reply.status_code == status, reply.get_json()
    return reply.get_json()


def _numbers(start: date, count: int) -> Iterator[str]:
    """`count` distinct valid ID numbers of the county: sequence numbers 001-999 of each birth day."""
    for k in range(count):
        yield idcard.make(COUNTY, start + timedelta(days=k // 999), k % 999 + 1)


def _roster(resident_numbers: list[str], codes: list[str]) -> tuple[bytes, list[tuple[str, str]]]:
    """The CSV and its persons in file order: (ID number, division code) of each distinct person."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["姓名", "身份证号", "手机号", "现住址", "行政区划代码", "类别", "来源", "优先级"])
    persons: list[tuple[str, str]] = []
    numbers = _numbers(date(1940, 1, 1), PERSONS - len(resident_numbers))
    for i in range(PERSONS):
        number = resident_numbers[i] if i < len(resident_numbers) else next(numbers)
        code = codes[i % len(codes)]
        persons.append((number, code))
        writer.writerow(
            [
                f"居民{i}",
                number,
                f"139{i:08d}",
                f"某村{i}号",
                code,
                ("发热", "密接")[i % 2],
                "",
                ("普通", "紧急")[i % 7 == 0],
            ]
        )
        if i % (PERSONS // BAD_ROWS) == 1:
            writer.writerow([f"错号{i}", number[:17] + ("0" if number[17] != "0" else "1"), "", "", code, "发热"])
        if i % (PERSONS // REPEATED_ROWS) == 2:
            writer.writerow([f"重复{i}", persons[i // 2][0], "", "", code, "发热"])
    return out.getvalue().encode(), persons


def _checksum(session, campaign_id: int) -> tuple[int, str, int]:
    """(tasks, md5 over every column of every task in id order, events) of the campaign."""
    tasks, digest = session.execute(
        sa.text(
            "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t.id)) FROM control_tasks t WHERE t.campaign_id = :c"
        ),
        {"c": campaign_id},
    ).one()
    events = session.scalar(
        sa.select(sa.func.count())
        .select_from(ControlTaskEvent)
        .join(ControlTask, ControlTask.id == ControlTaskEvent.task_id)
        .where(ControlTask.campaign_id == campaign_id)
    )
    return tasks, digest, events


def test_a_county_campaign_of_100000_persons(county_app):
    app, sandbox, tree = county_app
    client = app.test_client()
    [county_dept] = tree.counties()
    province_admin = bearer(sign_in(client, sandbox, tree.member_at("province_commission")["userid"]))
    county_admin = bearer(sign_in(client, sandbox, tree.member_at("county_bureau", county=county_dept)["userid"]))

    with app.app_context():
        session = db.session()
        nodes = session.execute(
            sa.select(OrgNode.id, OrgNode.level, OrgNode.dept_id).where(OrgNode.deleted_at.is_(None))
        ).all()
        county = next(n.id for n in nodes if n.dept_id == county_dept)
        province = next(n.id for n in nodes if n.level == "province_commission")
        institutions = sorted(n.id for n in nodes if n.level in INSTITUTION_LEVELS)
    assert len(institutions) == 11  # the lead hospital and ten member institutions

    # Service areas: the county to its bureau (its unmapped townships queue there), a township per institution,
    # and one village per township to the next institution (the longest code wins).
    areas = {COUNTY: county}
    for k, institution in enumerate(institutions):
        township = f"{COUNTY}{100 + k:03d}"
        areas[township] = institution
        areas[f"{township}201"] = institutions[(k + 1) % len(institutions)]
    items = [{"division_code": code, "node_id": node} for code, node in areas.items()]
    _ok(client.put(f"{API}/service-areas/bulk", json={"items": items}, headers=province_admin))

    # Family-doctor residents signed with a team of the last institution: their rows go to that team.
    team_institution = institutions[-1]
    team = _ok(
        client.post(
            "/api/family-doctor/teams",
            json={"institution_id": team_institution, "name": "五峰示范团队"},
            headers=county_admin,
        ),
        201,
    )["id"]
    resident_numbers = [idcard.make("420502", date(1935, 1, 1) + timedelta(days=n), 7) for n in range(RESIDENTS)]
    for n, number in enumerate(resident_numbers):
        _ok(
            client.post(
                "/api/family-doctor/contracts",
                json={"name": f"签约{n}", "id_number": number, "team_id": team, "tags": ["hypertension"]},
                headers=county_admin,
            ),
            201,
        )

    codes = [code for code in areas if code != COUNTY]
    codes += [f"{COUNTY}{100 + k:03d}305" for k in range(0, len(institutions), 3)]  # villages without an area
    codes += [COUNTY_UNMAPPED, OUTSIDE]
    content, persons = _roster(resident_numbers, codes)
    assert len({number for number, _ in persons}) == PERSONS

    campaign = _ok(
        client.post(
            f"{API}/campaigns", json=campaign_body(province, name="五峰县发热人群排查"), headers=province_admin
        ),
        201,
    )["id"]
    upload = {"file": (io.BytesIO(content), "wufeng.csv")}
    report = _ok(
        client.post(
            f"{API}/campaigns/{campaign}/roster",
            data=upload,
            headers=province_admin,
            content_type="multipart/form-data",
        )
    )
    assert (report["rows"], report["added"]) == (PERSONS + BAD_ROWS + REPEATED_ROWS, PERSONS), (
        {k: v for k, v in report.items() if k != "rejects"},
        Counter((r["field"], r["message"]) for r in report["rejects"]),
    )
    assert (report["duplicates"], report["rejected"]) == (REPEATED_ROWS, BAD_ROWS)
    _ok(client.patch(f"{API}/campaigns/{campaign}", json={"state": "active"}, headers=province_admin))

    # What every person should have become, computed from the file and the areas alone.
    residents = set(resident_numbers)

    def expected(number: str, code: str) -> tuple:
        if number in residents:
            return ("assigned", county, team_institution, team)
        node = next((areas[code[:n]] for n in (12, 9, 6) if code[:n] in areas and len(code) >= n), None)
        if node is None:
            return ("queued", county if code.startswith(COUNTY) else None, None, None)
        if node == county:
            return ("queued", county, None, None)
        return ("assigned", county, node, None)

    want = Counter(expected(number, code) for number, code in persons)
    queued_here = want[("queued", county, None, None)]
    queued_nowhere = want[("queued", None, None, None)]
    assert queued_here > 0 and queued_nowhere > 0 and want[("assigned", county, team_institution, team)] == RESIDENTS

    with app.app_context():
        session = db.session()
        persons_stored = session.scalar(
            sa.select(sa.func.count()).select_from(CampaignPerson).where(CampaignPerson.campaign_id == campaign)
        )
        without_task = session.scalar(
            sa.select(sa.func.count())
            .select_from(CampaignPerson)
            .outerjoin(ControlTask, ControlTask.person_id == CampaignPerson.id)
            .where(CampaignPerson.campaign_id == campaign, ControlTask.id.is_(None))
        )
        tasks, distinct_persons = session.execute(
            sa.select(sa.func.count(), sa.func.count(sa.distinct(ControlTask.person_id))).where(
                ControlTask.campaign_id == campaign
            )
        ).one()
        assert (persons_stored, tasks, distinct_persons, without_task) == (PERSONS, PERSONS, PERSONS, 0)
        got = Counter(
            {
                tuple(row[:-1]): row[-1]
                for row in session.execute(
                    sa.select(
                        ControlTask.state,
                        ControlTask.county_id,
                        ControlTask.institution_id,
                        ControlTask.team_id,
                        sa.func.count(),
                    )
                    .where(ControlTask.campaign_id == campaign)
                    .group_by(ControlTask.state, ControlTask.county_id, ControlTask.institution_id, ControlTask.team_id)
                )
            }
        )
        assert got == want
        per_county = Counter()
        for (_, county_id, _, _), n in want.items():
            per_county[county_id] += n
        assert dict(
            session.execute(
                sa.select(ControlTask.county_id, sa.func.count())
                .where(ControlTask.campaign_id == campaign)
                .group_by(ControlTask.county_id)
            ).all()
        ) == dict(per_county)
        before = _checksum(session, campaign)
        assert before[0] == before[2] == PERSONS  # one dispatch event per task

    # The county reads its own queue; the province (the owner) also the persons no county answers for.
    county_queue = _ok(client.get(f"{API}/campaigns/{campaign}/queue?limit=5", headers=county_admin))
    assert county_queue["total"] == queued_here
    assert {item["county_id"] for item in county_queue["items"]} == {county}
    assert all(item["name_masked"] and "居民" not in item["name_masked"] for item in county_queue["items"])
    owner_queue = _ok(client.get(f"{API}/campaigns/{campaign}/queue?limit=5", headers=province_admin))
    assert owner_queue["total"] == queued_here + queued_nowhere

    # The same file again: nothing added, not a task or an event changed.
    again = _ok(
        client.post(
            f"{API}/campaigns/{campaign}/roster",
            data={"file": (io.BytesIO(content), "wufeng.csv")},
            headers=province_admin,
            content_type="multipart/form-data",
        )
    )
    assert (again["added"], again["duplicates"], again["rejected"]) == (0, PERSONS + REPEATED_ROWS, BAD_ROWS)
    with app.app_context():
        assert _checksum(db.session(), campaign) == before
