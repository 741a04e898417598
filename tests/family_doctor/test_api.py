"""Family-doctor signing over HTTP on both backends: teams, scope, masking, encryption at rest, contract rules,
and a small import (CSV and .xlsx, dry run, re-import)."""

from __future__ import annotations

import io
from datetime import timedelta

import openpyxl
import sqlalchemy as sa

from mini_apps.family_doctor import service
from mini_apps.family_doctor.models import Contract, FamilyDoctorTeam, Resident
from org_sync.models import OrgMember, OrgNode
from tests.family_doctor.conftest import World, id_number
from workbench import db
from workbench.audit import AuditRecord
from workbench.auth.principal import Principal, Role

API = "/api/family-doctor"


def sign(client, headers, world: World, n: int, **over):
    body = {
        "name": "张三",
        "id_number": id_number(n),
        "phone": "13812345678",
        "address": "杭州市西湖区留下街道某村1号",
        "division_code": "330106001001",
        "tags": ["elderly", "hypertension"],
        "team_id": world.team_id,
        **over,
    }
    return client.post(f"{API}/contracts", json=body, headers=headers)


def audit_rows(app, action: str) -> list[AuditRecord]:
    with app.app_context():
        return db.session().scalars(sa.select(AuditRecord).where(AuditRecord.action == action)).all()


# -- teams ------------------------------------------------------------------------------------------------------


def test_teams_belong_to_institutions_and_stay_in_scope(tree_app, tree_client, world: World):
    client = tree_client
    with tree_app.app_context():
        session = db.session()
        county_node = session.scalar(
            sa.select(OrgNode.id).where(OrgNode.level == "county_bureau", OrgNode.deleted_at.is_(None))
        )
        department = session.scalar(
            sa.select(OrgNode.id).where(
                OrgNode.path.startswith(session.get(OrgNode, world.institution_id).path),
                OrgNode.level == "internal_department",
            )
        )
    # A bureau is not an institution; a department's team is stored on its institution.
    reply = client.post(f"{API}/teams", json={"institution_id": county_node, "name": "x"}, headers=world.county_admin)
    assert reply.status_code in (404, 422) and reply.get_json()["error"]["field"] == "institution_id"
    reply = client.post(
        f"{API}/teams", json={"institution_id": department, "name": "二团队"}, headers=world.county_admin
    )
    assert reply.status_code == 201, reply.get_json()
    assert reply.get_json()["institution_id"] == world.institution_id
    # Same name twice in one institution: 409; a missing name: 422 naming it.
    reply = client.post(
        f"{API}/teams", json={"institution_id": world.institution_id, "name": "二团队"}, headers=world.county_admin
    )
    assert reply.status_code == 409
    reply = client.post(f"{API}/teams", json={"institution_id": world.institution_id}, headers=world.county_admin)
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "name"
    # A doctor may not create teams; another county's admin cannot reach this institution.
    reply = client.post(
        f"{API}/teams", json={"institution_id": world.institution_id, "name": "x"}, headers=world.doctor
    )
    assert reply.status_code == 403
    reply = client.post(
        f"{API}/teams", json={"institution_id": world.institution_id, "name": "x"}, headers=world.other_county_admin
    )
    assert reply.status_code == 404

    # Who sees the team: the county admin and the member; not a colleague off the team, not another county.
    assert {t["name"] for t in client.get(f"{API}/teams", headers=world.county_admin).get_json()["items"]} == {
        "第一家庭医生团队",
        "二团队",
    }
    mine = client.get(f"{API}/teams", headers=world.doctor).get_json()["items"]
    assert [t["id"] for t in mine] == [world.team_id] and mine[0]["members"][0]["role"] == "leader"
    assert client.get(f"{API}/teams", headers=world.colleague).get_json()["items"] == []
    assert client.get(f"{API}/teams", headers=world.other_county_admin).get_json()["items"] == []
    assert client.get(f"{API}/teams/{world.team_id}", headers=world.other_county_admin).status_code == 404
    # A plain member may not change the team's members.
    reply = client.post(
        f"{API}/teams/{world.team_id}/members", json={"userid": "x", "role": "doctor"}, headers=world.doctor
    )
    assert reply.status_code == 403


def test_a_member_who_left_the_org_cannot_join_a_team(tree_app, tree_client, world: World):
    with tree_app.app_context():
        session = db.session()
        member = session.scalar(sa.select(OrgMember).where(OrgMember.active.is_(True)).order_by(OrgMember.id.desc()))
        member.deleted_at = member.updated_at
        session.commit()
        userid = member.userid
    reply = tree_client.post(
        f"{API}/teams/{world.team_id}/members", json={"userid": userid, "role": "nurse"}, headers=world.county_admin
    )
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "userid"
    reply = tree_client.post(
        f"{API}/teams/{world.team_id}/members", json={"userid": userid, "role": "chief"}, headers=world.county_admin
    )
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "role"


def test_an_institution_admin_sees_the_teams_of_their_institution(tree_app, world: World):
    with tree_app.app_context():
        session = db.session()
        path = session.get(OrgNode, world.institution_id).path
        principal = Principal(
            member_id=None,
            corp_id="c",
            userid="u",
            name="院长",
            roles=(Role("institution_admin", world.institution_id, path, "grant"),),
        )
        assert [t["id"] for t in service.list_teams(principal, session)["items"]] == [world.team_id]
        clinician = Principal(
            member_id=None,
            corp_id="c",
            userid="v",
            name="医生",
            roles=(Role("clinician", world.institution_id, path, "position"),),
        )
        assert service.list_teams(clinician, session)["items"] == []


# -- residents: masking, encryption, audit, scope ---------------------------------------------------------------


def test_residents_are_masked_encrypted_and_every_read_audited(tree_app, tree_client, world: World):
    number = id_number(11, address="330106")
    reply = sign(tree_client, world.doctor, world, 11, id_number=number.lower())
    assert reply.status_code == 201, reply.get_json()
    resident = reply.get_json()
    assert resident["id_number"] == number[:3] + "*" * 11 + number[-4:]
    assert resident["phone"] == "138****5678"
    assert resident["birth_date"] == "1950-03-07" and resident["sex"] == "M"
    assert resident["contract"]["state"] == "active" and resident["contract"]["package"] == "基础包"

    listing = tree_client.get(f"{API}/residents", headers=world.doctor).get_json()
    assert listing["total"] == 1
    [item] = listing["items"]
    assert item["id_number"] == resident["id_number"] and item["phone"] == "138****5678"
    assert number not in str(listing) and "13812345678" not in str(listing)
    assert item["tags"] == ["elderly", "hypertension"]

    # At rest: neither the ID number nor the phone is anywhere in the row; the ciphertext decrypts with the key.
    with tree_app.app_context():
        row = db.session().execute(sa.select(Resident.__table__).where(Resident.id == resident["id"])).one()
        stored = " ".join(str(value) for value in row)
        assert number not in stored and number[6:14] + number[14:] not in stored and "13812345678" not in stored
        from workbench import privacy

        key = tree_app.config["SETTINGS"].secret_key
        assert privacy.decrypt_field(row.id_cipher, key, context="resident.id_number") == number
        assert privacy.decrypt_field(row.phone_cipher, key, context="resident.phone") == "13812345678"

    detail = tree_client.get(f"{API}/residents/{resident['id']}", headers=world.doctor).get_json()
    assert detail["id_number"] == resident["id_number"] and len(detail["contracts"]) == 1

    [read] = audit_rows(tree_app, "resident.read")
    assert read.resource_id == str(resident["id"]) and read.node_id == world.institution_id
    [listed] = audit_rows(tree_app, "resident.list")
    assert listed.detail["count"] == 1 and listed.node_id == world.institution_id
    assert "张三" not in str(listed.detail) and number not in str(listed.detail)


def test_nobody_outside_the_team_scope_reads_its_residents(tree_app, tree_client, world: World):
    resident = sign(tree_client, world.doctor, world, 12).get_json()
    for outsider in (world.other_county_admin, world.colleague):
        assert tree_client.get(f"{API}/residents/{resident['id']}", headers=outsider).status_code == 404
        assert tree_client.get(f"{API}/residents", headers=outsider).get_json()["items"] == []
        contract = resident["contract"]["id"]
        assert tree_client.post(f"{API}/contracts/{contract}/terminate", json={}, headers=outsider).status_code == 404
        assert sign(tree_client, outsider, world, 13).status_code == 404  # cannot sign to a team it cannot act for
    # The county admin sees it.
    assert tree_client.get(f"{API}/residents/{resident['id']}", headers=world.county_admin).status_code == 200
    assert tree_client.get(f"{API}/residents", headers=world.county_admin).get_json()["total"] == 1


# -- contracts --------------------------------------------------------------------------------------------------


def test_contract_rules(tree_app, tree_client, world: World):
    client, doctor = tree_client, world.doctor
    today = service.today()
    # Checksum and one-year term: 422 naming the field.
    reply = sign(client, doctor, world, 20, id_number=id_number(20)[:17] + ("0" if id_number(20)[17] != "0" else "1"))
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "id_number"
    reply = sign(client, doctor, world, 20, start_date=str(today), end_date=str(today + timedelta(days=200)))
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "end_date"

    start = service.add_years(today, -1) + timedelta(days=10)  # ends in 9 days: expiring
    first = sign(client, doctor, world, 20, start_date=str(start))
    assert first.status_code == 201, first.get_json()
    contract = first.get_json()["contract"]
    assert contract["state"] == "expiring" and contract["end_date"] == str(today + timedelta(days=9))

    # At most one active contract per resident.
    assert sign(client, doctor, world, 20).status_code == 409

    # Filters: expiring within N days, state, tag.
    sign(client, doctor, world, 21, tags=["diabetes"])
    listing = client.get(f"{API}/residents?expiring_within=30", headers=doctor).get_json()
    assert [r["id"] for r in listing["items"]] == [first.get_json()["id"]]
    assert client.get(f"{API}/residents?state=expiring", headers=doctor).get_json()["total"] == 1
    assert client.get(f"{API}/residents?state=active", headers=doctor).get_json()["total"] == 1
    assert client.get(f"{API}/residents?tag=diabetes", headers=doctor).get_json()["total"] == 1
    assert client.get(f"{API}/residents?tag=elderly", headers=doctor).get_json()["total"] == 1
    assert client.get(f"{API}/residents?state=bogus", headers=doctor).status_code == 422

    # Renewal: a new contract linked to the old, which shows as renewed.
    reply = client.post(f"{API}/contracts/{contract['id']}/renew", json={}, headers=doctor)
    assert reply.status_code == 201, reply.get_json()
    renewed = reply.get_json()
    assert renewed["previous_id"] == contract["id"] and renewed["start_date"] == str(today + timedelta(days=10))
    assert renewed["state"] == "active"
    detail = client.get(f"{API}/residents/{first.get_json()['id']}", headers=doctor).get_json()
    assert [c["state"] for c in detail["contracts"]] == ["active", "renewed"]
    assert detail["contract"]["id"] == renewed["id"]
    assert client.post(f"{API}/contracts/{contract['id']}/renew", json={}, headers=doctor).status_code == 409

    # Termination.
    reply = client.post(f"{API}/contracts/{renewed['id']}/terminate", json={"reason": "迁出"}, headers=doctor)
    assert reply.status_code == 200 and reply.get_json()["state"] == "terminated"
    assert client.post(f"{API}/contracts/{renewed['id']}/terminate", json={}, headers=doctor).status_code == 409
    assert client.get(f"{API}/residents?state=terminated", headers=doctor).get_json()["total"] == 1
    # Terminated: the resident may sign again.
    assert sign(client, doctor, world, 20, start_date=str(today + timedelta(days=11))).status_code == 201


# -- import -----------------------------------------------------------------------------------------------------

HEADER = [
    "姓名",
    "身份证号",
    "联系电话",
    "现住址",
    "行政区划代码",
    "重点人群",
    "签约团队",
    "服务包",
    "签约日期",
    "到期日期",
]


def _rows(world: World) -> list[list[str]]:
    good = [
        [
            "李四",
            id_number(31),
            "13900000001",
            "某街道1号",
            "330106",
            "老年人、高血压",
            world.team_name,
            "",
            "2026-01-01",
            "2026-12-31",
        ],
        ["王五", id_number(32).lower(), "", "", "", "", world.team_name, "慢病包", "2026/02/01", "2027/01/31"],
        ["赵六", id_number(33), "", "", "330106001001", "diabetes", str(world.team_id), "", "20260301", "20270228"],
    ]
    bad = [
        [
            "坏校验",
            id_number(34)[:17] + ("1" if id_number(34)[17] != "1" else "2"),
            "",
            "",
            "",
            "",
            world.team_name,
            "",
            "2026-01-01",
            "2026-12-31",
        ],
        ["", id_number(35), "", "", "", "", world.team_name, "", "2026-01-01", "2026-12-31"],
        ["重复", id_number(31), "", "", "", "", world.team_name, "", "2026-01-01", "2026-12-31"],
        ["无团队", id_number(36), "", "", "", "", "不存在的团队", "", "2026-01-01", "2026-12-31"],
        ["坏日期", id_number(37), "", "", "", "", world.team_name, "", "2026-13-01", "2026-12-31"],
        ["不足一年", id_number(38), "", "", "", "", world.team_name, "", "2026-01-01", "2026-06-30"],
        ["坏标签", id_number(39), "", "", "12345", "富人", world.team_name, "", "2026-01-01", "2026-12-31"],
    ]
    return good + bad


def _csv(rows: list[list[str]]) -> bytes:
    import csv

    out = io.StringIO()
    csv.writer(out).writerows([HEADER, *rows])
    return out.getvalue().encode("utf-8-sig")


def _upload(client, headers, content: bytes, filename: str, dry_run: bool = False):
    return client.post(
        f"{API}/imports?dry_run={'true' if dry_run else 'false'}",
        data={"file": (io.BytesIO(content), filename)},
        headers=headers,
        content_type="multipart/form-data",
    )


def _counts(app) -> tuple[int, int]:
    with app.app_context():
        session = db.session()
        return (
            session.scalar(sa.select(sa.func.count()).select_from(Resident)),
            session.scalar(sa.select(sa.func.count()).select_from(Contract)),
        )


def test_import_reports_bad_rows_writes_good_ones_and_is_idempotent(tree_app, tree_client, world: World):
    content = _csv(_rows(world))
    dry = _upload(tree_client, world.doctor, content, "签约.csv", dry_run=True)
    assert dry.status_code == 200, dry.get_json()
    report = dry.get_json()
    assert report["dry_run"] is True and report["total_rows"] == 10
    assert report["accepted_rows"] == 3 and report["rejected_rows"] == 7
    assert _counts(tree_app) == (0, 0)
    reasons = {(r["row"], r["field"]): r["reason"] for r in report["rejects"]}
    assert "校验码" in reasons[(5, "身份证号")]
    assert reasons[(6, "姓名")] == "姓名不能为空"
    assert reasons[(7, "身份证号")] == "身份证号与第2行重复"
    assert "不存在" in reasons[(8, "签约团队")]
    assert "格式" in reasons[(9, "签约日期")]
    assert "不少于一年" in reasons[(10, "到期日期")]
    assert "富人" in reasons[(11, "重点人群")] and (11, "行政区划代码") in reasons

    done = _upload(tree_client, world.doctor, content, "签约.csv").get_json()
    assert done["created_residents"] == 3 and done["created_contracts"] == 3 and done["rejected_rows"] == 7
    assert _counts(tree_app) == (3, 3)
    listing = tree_client.get(f"{API}/residents?tag=hypertension", headers=world.doctor).get_json()
    assert [r["name"] for r in listing["items"]] == ["李四"]

    again = _upload(tree_client, world.doctor, content, "签约.csv").get_json()
    assert again["created_residents"] == 0 and again["created_contracts"] == 0 and again["unchanged_rows"] == 3
    assert _counts(tree_app) == (3, 3)

    # The same rows as .xlsx: nothing new either; and another county's admin may not import into the team.
    book = openpyxl.Workbook()
    sheet = book.active
    for row in [HEADER, *_rows(world)]:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    xlsx = _upload(tree_client, world.doctor, buffer.getvalue(), "签约.xlsx").get_json()
    assert xlsx["unchanged_rows"] == 3 and xlsx["rejected_rows"] == 7 and _counts(tree_app) == (3, 3)
    outsider = _upload(tree_client, world.other_county_admin, content, "签约.csv").get_json()
    assert outsider["accepted_rows"] == 0 and _counts(tree_app) == (3, 3)
    assert len(audit_rows(tree_app, "resident.import")) == 5


def test_import_refuses_wrong_files(tree_client, world: World):
    reply = _upload(tree_client, world.doctor, b"a,b\n1,2\n", "x.csv")
    assert reply.status_code == 422 and "缺少必需的列" in reply.get_json()["error"]["message"]
    reply = _upload(tree_client, world.doctor, b"not a workbook", "x.xlsx")
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "file"
    reply = _upload(tree_client, world.doctor, b"x", "x.txt")
    assert reply.status_code == 422
    reply = _upload(tree_client, world.doctor, b"0" * (20 * 1024 * 1024 + 10), "big.csv")
    assert reply.status_code == 413 and reply.get_json()["error"]["field"] == "file"
    reply = tree_client.post(f"{API}/imports", headers=world.doctor)
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "file"


def test_the_import_only_reaches_the_callers_teams(tree_app, tree_client, world: World):
    """A team of another institution is unknown to the doctor, by name or by id."""
    with tree_app.app_context():
        session = db.session()
        elsewhere = session.scalar(
            sa.select(OrgNode.id).where(OrgNode.level == "member_institution", OrgNode.id != world.institution_id)
        )
        team = FamilyDoctorTeam(institution_id=elsewhere, name="别家团队", created_by="test")
        session.add(team)
        session.commit()
        team_id = team.id
    rows = [
        ["甲", id_number(41), "", "", "", "", "别家团队", "", "2026-01-01", "2026-12-31"],
        ["乙", id_number(42), "", "", "", "", str(team_id), "", "2026-01-01", "2026-12-31"],
    ]
    report = _upload(tree_client, world.doctor, _csv(rows), "x.csv").get_json()
    assert [(r["row"], r["field"]) for r in report["rejects"]] == [(2, "签约团队"), (3, "签约团队")]
    assert _counts(tree_app) == (0, 0)
