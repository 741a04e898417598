"""Roster intake: a file or a push checked row by row (bad rows reported, good rows in), deduplicated by a keyed
hash within the campaign, stored encrypted with masked copies, linked to family-doctor residents, and built from
the residents themselves."""

from __future__ import annotations

import io
import json
from datetime import date, timedelta

import openpyxl
import sqlalchemy as sa

from mini_apps.family_doctor.models import FollowUp
from mini_apps.precision_control import roster
from mini_apps.precision_control.models import CampaignPerson, ControlTask, RosterImport
from org_sync.models import OrgNode
from tests.precision_control.conftest import campaign_body, id_number
from workbench import db, privacy

URL = "/api/precision-control/campaigns"
HEADER = "姓名,身份证号,手机号,现住址,行政区划代码,类别,来源,优先级"


def _campaign(client, world, headers=None, owner: int | None = None, **overrides) -> int:
    reply = client.post(
        URL, json=campaign_body(owner or world.county_id, **overrides), headers=headers or world.county_admin.headers
    )
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()["id"]


def _upload(client, headers, campaign_id: int, content: bytes, filename: str = "roster.csv"):
    return client.post(
        f"{URL}/{campaign_id}/roster",
        data={"file": (io.BytesIO(content), filename)},
        headers=headers,
        content_type="multipart/form-data",
    )


def _bad_checksum(number: str) -> str:
    return number[:17] + ("0" if number[17] != "0" else "1")


def _persons(app, campaign_id: int) -> list[CampaignPerson]:
    with app.app_context():
        session = db.session()
        rows = session.scalars(
            sa.select(CampaignPerson).where(CampaignPerson.campaign_id == campaign_id).order_by(CampaignPerson.id)
        ).all()
        session.expunge_all()
        return list(rows)


def test_a_csv_with_good_and_bad_rows_reports_the_bad_and_takes_the_good(tree_app, tree_client, pc_world):
    admin = pc_world.county_admin.headers
    campaign = _campaign(tree_client, pc_world)
    d = pc_world.division
    lines = [
        HEADER,
        f"张三,{id_number(1)},13812345678,城关镇幸福路1号,{d},发热,发热门诊,紧急",  # row 2: good
        f"李四,{_bad_checksum(id_number(2))},,,{d},发热,,",  # row 3: bad checksum
        f",{id_number(3)},,,{d},密接,,",  # row 4: no name
        f"王五,{id_number(4)},,,12345,发热,,",  # row 5: bad division code
        f"赵六,{id_number(1)},,,{d}001,发热,,",  # row 6: the same person as row 2
        f"钱七,{id_number(5).lower()},,,{d}001002,密接,协查,routine",  # row 7: good (12-digit code)
        f"孙八,{id_number(6)},1381234,,{d},其他,,加急",  # row 8: phone, category and priority wrong
    ]
    reply = _upload(tree_client, admin, campaign, "\n".join(lines).encode())
    assert reply.status_code == 200, reply.get_json()
    report = reply.get_json()
    assert (report["rows"], report["added"], report["duplicates"], report["rejected"]) == (7, 2, 1, 4)
    problems = {(r["row"], r["field"]) for r in report["rejects"]}
    assert problems == {
        (3, "id_number"),
        (4, "name"),
        (5, "division_code"),
        (6, "id_number"),
        (8, "phone"),
        (8, "category"),
        (8, "priority"),
    }
    assert next(r for r in report["rejects"] if r["row"] == 6)["message"] == "身份证号与第2行重复，未重复添加"
    # The report names rows and fields, never what was in them.
    text = json.dumps(report["rejects"], ensure_ascii=False)
    assert id_number(2)[:17] not in text and "李四" not in text

    persons = _persons(tree_app, campaign)
    assert [(p.name_masked, p.division_code, p.category, p.priority, p.source_note) for p in persons] == [
        ("张*", d, "发热", "urgent", "发热门诊"),
        ("钱*", f"{d}001002", "密接", "routine", "协查"),
    ]
    stored = tree_client.get(f"{URL}/{campaign}/imports/{report['id']}", headers=admin).get_json()
    assert stored["added"] == 2 and stored["rejects"] == report["rejects"]
    listed = tree_client.get(f"{URL}/{campaign}/imports", headers=admin).get_json()
    assert [i["id"] for i in listed["items"]] == [report["id"]]


def test_a_re_upload_of_the_same_file_adds_nothing(tree_app, tree_client, pc_world):
    admin = pc_world.county_admin.headers
    campaign = _campaign(tree_client, pc_world)
    content = "\n".join([HEADER, *(f"居民{n},{id_number(n)},,,{pc_world.division},发热,," for n in range(1, 6))])
    first = _upload(tree_client, admin, campaign, content.encode()).get_json()
    assert (first["added"], first["duplicates"]) == (5, 0)
    again = _upload(tree_client, admin, campaign, content.encode()).get_json()
    assert (again["rows"], again["added"], again["duplicates"], again["rejected"]) == (5, 0, 5, 0)
    assert again["sha256"] == first["sha256"]
    assert len(_persons(tree_app, campaign)) == 5
    # Another campaign's roster is its own: the same persons go in there.
    other = _campaign(tree_client, pc_world, name="另一专项")
    assert _upload(tree_client, admin, other, content.encode()).get_json()["added"] == 5


def test_an_xlsx_roster_with_english_headers_works(tree_app, tree_client, pc_world):
    campaign = _campaign(tree_client, pc_world, categories=[])
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["name", "id_number", "phone", "division_code", "category", "priority"])
    sheet.append(["周九", id_number(7), "13900001111", int(pc_world.division), "自由类别", "urgent"])
    sheet.append(["吴十", id_number(8), None, pc_world.division, None, None])
    sheet.append(["郑十一", "123", None, pc_world.division, None, None])
    buffer = io.BytesIO()
    book.save(buffer)
    reply = _upload(tree_client, pc_world.county_admin.headers, campaign, buffer.getvalue(), "名单.xlsx")
    assert reply.status_code == 200, reply.get_json()
    report = reply.get_json()
    assert (report["added"], report["rejected"]) == (2, 1)
    assert report["rejects"] == [{"row": 4, "field": "id_number", "message": report["rejects"][0]["message"]}]
    persons = _persons(tree_app, campaign)
    assert [(p.category, p.priority, p.phone_masked) for p in persons] == [
        ("自由类别", "urgent", "139****1111"),
        ("", "routine", None),
    ]


def test_a_file_without_the_required_columns_or_of_another_type_is_refused(tree_client, pc_world):
    admin = pc_world.county_admin.headers
    campaign = _campaign(tree_client, pc_world)
    missing = _upload(tree_client, admin, campaign, "姓名,手机号\n张三,13800000000".encode())
    assert missing.status_code == 422 and missing.get_json()["error"]["field"] == "file"
    assert "身份证号" in missing.get_json()["error"]["message"]
    wrong = _upload(tree_client, admin, campaign, b"hello", "roster.txt")
    assert wrong.status_code == 422 and wrong.get_json()["error"]["field"] == "file"
    nothing = tree_client.post(f"{URL}/{campaign}/roster", headers=admin, content_type="multipart/form-data")
    assert nothing.status_code == 422 and nothing.get_json()["error"]["field"] == "file"
    header_only = _upload(tree_client, admin, campaign, HEADER.encode())
    assert header_only.status_code == 422 and header_only.get_json()["error"]["field"] == "file"
    assert tree_client.get(f"{URL}/{campaign}/imports", headers=admin).get_json()["total"] == 0


def test_a_failure_while_writing_keeps_nothing(tree_app, tree_client, pc_world, monkeypatch):
    admin = pc_world.county_admin.headers
    campaign = _campaign(tree_client, pc_world)
    monkeypatch.setattr(roster, "BATCH", 2)  # five persons: three chunks, the second one fails
    real = roster._person_rows
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(roster, "_person_rows", failing)
    content = "\n".join([HEADER, *(f"居民{n},{id_number(n)},,,{pc_world.division},发热,," for n in range(1, 6))])
    reply = _upload(tree_client, admin, campaign, content.encode())
    assert reply.status_code == 500 and reply.get_json()["error"]["code"] == "import_failed"
    assert len(calls) == 2
    assert _persons(tree_app, campaign) == []
    assert tree_client.get(f"{URL}/{campaign}/imports", headers=admin).get_json()["total"] == 0
    monkeypatch.setattr(roster, "_person_rows", real)
    again = _upload(tree_client, admin, campaign, content.encode()).get_json()
    assert (again["added"], again["duplicates"]) == (5, 0)


def test_persons_are_stored_encrypted_and_masked(tree_app, tree_client, pc_world):
    campaign = _campaign(tree_client, pc_world)
    number = id_number(9)
    reply = tree_client.post(
        f"{URL}/{campaign}/roster/items",
        json={
            "items": [
                {
                    "name": "欧阳娜娜",
                    "id_number": number,
                    "phone": "13812345678",
                    "address": "城关镇幸福路8号",
                    "division_code": pc_world.division,
                    "category": "密接",
                }
            ]
        },
        headers=pc_world.county_admin.headers,
    )
    assert reply.status_code == 200 and reply.get_json()["added"] == 1
    with tree_app.app_context():
        session = db.session()
        row = session.execute(sa.select(CampaignPerson.__table__).where(CampaignPerson.campaign_id == campaign)).one()
        plain = {str(value) for value in row}
        for secret in (number, "欧阳娜娜", "13812345678", "城关镇幸福路8号"):
            assert not any(secret in value for value in plain)
        assert (row.name_masked, row.id_masked, row.phone_masked) == (
            "欧**娜",
            number[:3] + "*" * 11 + number[-4:],
            "138****5678",
        )
        ring = privacy.keyring()
        assert privacy.decrypt_field(row.id_cipher, ring, context="control.id_number") == number
        assert privacy.decrypt_field(row.name_cipher, ring, context="control.name") == "欧阳娜娜"
        assert privacy.decrypt_field(row.address_cipher, ring, context="control.address") == "城关镇幸福路8号"
        assert row.id_hash == privacy.lookup_hash(number, ring, context="control.id_number")


def test_an_api_push_is_checked_like_a_file_and_capped(tree_app, tree_client, pc_world):
    admin = pc_world.county_admin.headers
    campaign = _campaign(tree_client, pc_world)
    items = [
        {"name": "甲", "id_number": id_number(10), "division_code": pc_world.division, "category": "发热"},
        {"name": "乙", "id_number": id_number(11), "division_code": pc_world.division, "category": "发热"},
        {"name": "丙", "id_number": id_number(12), "division_code": "", "category": "发热"},
    ]
    report = tree_client.post(f"{URL}/{campaign}/roster/items", json={"items": items}, headers=admin).get_json()
    assert (report["source"], report["rows"], report["added"], report["rejected"]) == ("api", 3, 2, 1)
    assert report["rejects"][0]["row"] == 3 and report["rejects"][0]["field"] == "division_code"
    again = tree_client.post(f"{URL}/{campaign}/roster/items", json={"items": items[:2]}, headers=admin).get_json()
    assert (again["added"], again["duplicates"]) == (0, 2)

    too_many = [items[0]] * 5001
    big = tree_client.post(f"{URL}/{campaign}/roster/items", json={"items": too_many}, headers=admin)
    assert big.status_code == 422 and big.get_json()["error"]["field"] == "items"
    empty = tree_client.post(f"{URL}/{campaign}/roster/items", json={"items": []}, headers=admin)
    assert empty.status_code == 422
    # Only the campaign's administrators take in rosters; others do not even see it.
    clinician = tree_client.post(
        f"{URL}/{campaign}/roster/items", json={"items": items}, headers=pc_world.clinician.headers
    )
    assert clinician.status_code == 403
    other = tree_client.post(
        f"{URL}/{campaign}/roster/items", json={"items": items}, headers=pc_world.other_county_admin.headers
    )
    assert other.status_code == 404
    with tree_app.app_context():
        assert db.session().scalar(sa.select(sa.func.count()).select_from(RosterImport)) == 2


def test_division_codes_must_lie_in_the_owners_area(tree_app, tree_client, pc_world):
    # The province node always carries its organ credit code, so its two-digit province prefix is known.
    with tree_app.app_context():
        code = db.session().scalar(sa.select(OrgNode.code).where(OrgNode.id == pc_world.province_id))
    inside = code[2:4] + "0102"
    outside = "110101" if not inside.startswith("11") else "330102"
    campaign = _campaign(tree_client, pc_world, pc_world.province_admin.headers, owner=pc_world.province_id)
    items = [
        {"name": "甲", "id_number": id_number(20), "division_code": inside, "category": "发热"},
        {"name": "乙", "id_number": id_number(21), "division_code": outside, "category": "发热"},
    ]
    report = tree_client.post(
        f"{URL}/{campaign}/roster/items", json={"items": items}, headers=pc_world.province_admin.headers
    ).get_json()
    assert report["added"] == 1
    assert report["rejects"] == [
        {"row": 2, "field": "division_code", "message": "行政区划代码不在本专项任务的管辖范围内"}
    ]


def _team_with_residents(tree_app, client, world) -> tuple[int, dict[str, int]]:
    """A team in the county's first institution and three signed residents: two with hypertension, one with
    diabetes."""
    admin = world.county_admin.headers
    team = client.post(
        "/api/family-doctor/teams",
        json={"institution_id": world.institution_ids[0], "name": "精密智控团队"},
        headers=admin,
    )
    assert team.status_code == 201, team.get_json()
    team_id = team.get_json()["id"]
    residents = {}
    for n, (name, tag) in enumerate([("高一", "hypertension"), ("高二", "hypertension"), ("糖三", "diabetes")]):
        number = id_number(100 + n, born=date(1948, 1, 2))
        reply = client.post(
            "/api/family-doctor/contracts",
            json={"name": name, "id_number": number, "team_id": team_id, "tags": [tag], "phone": "13700000000"},
            headers=admin,
        )
        assert reply.status_code == 201, reply.get_json()
        residents[number] = reply.get_json()["id"]
    return team_id, residents


def test_a_pushed_person_who_is_a_resident_is_linked(tree_app, tree_client, pc_world):
    _, residents = _team_with_residents(tree_app, tree_client, pc_world)
    number, resident_id = next(iter(residents.items()))
    campaign = _campaign(tree_client, pc_world)
    items = [
        {"name": "高一", "id_number": number, "division_code": pc_world.division, "category": "发热"},
        {"name": "路人", "id_number": id_number(30), "division_code": pc_world.division, "category": "发热"},
    ]
    tree_client.post(f"{URL}/{campaign}/roster/items", json={"items": items}, headers=pc_world.county_admin.headers)
    assert [p.resident_id for p in _persons(tree_app, campaign)] == [resident_id, None]


def test_a_roster_built_from_family_doctor_residents(tree_app, tree_client, pc_world):
    team_id, residents = _team_with_residents(tree_app, tree_client, pc_world)
    admin = pc_world.county_admin.headers
    campaign = _campaign(tree_client, pc_world, categories=[])
    url = f"{URL}/{campaign}/roster/from-family-doctor"
    report = tree_client.post(url, json={"tag": "高血压"}, headers=admin).get_json()
    assert (report["source"], report["added"]) == ("family_doctor", 2)
    persons = _persons(tree_app, campaign)
    hypertension = {rid for number, rid in residents.items() if number[14:17] in ("100", "101")}
    assert {p.resident_id for p in persons} == hypertension
    assert {(p.category, p.source_note, p.name_masked) for p in persons} == {
        ("高血压", "家庭医生签约数据", "高*"),
    }
    with tree_app.app_context():
        ring = privacy.keyring()
        numbers = {privacy.decrypt_field(p.id_cipher, ring, context="control.id_number") for p in persons}
    assert numbers == {n for n in residents if n[14:17] in ("100", "101")}
    assert tree_client.post(url, json={"tag": "高血压"}, headers=admin).get_json()["added"] == 0

    # Only those with an overdue follow-up: one diabetes resident made overdue.
    diabetic = next(rid for number, rid in residents.items() if number[14:17] == "102")
    with tree_app.app_context():
        session = db.session()
        session.execute(sa.delete(FollowUp).where(FollowUp.resident_id == diabetic))
        session.add(
            FollowUp(resident_id=diabetic, team_id=team_id, kind="diabetes", due_date=date.today() - timedelta(days=3))
        )
        session.commit()
    second = _campaign(tree_client, pc_world, categories=["慢病"], name="慢病随访")
    url = f"{URL}/{second}/roster/from-family-doctor"
    refused = tree_client.post(url, json={"tag": "diabetes", "overdue_follow_up": True}, headers=admin)
    assert refused.status_code == 422 and refused.get_json()["error"]["field"] == "category"
    unknown = tree_client.post(url, json={"tag": "flu", "category": "慢病"}, headers=admin)
    assert unknown.status_code == 422 and unknown.get_json()["error"]["field"] == "tag"
    overdue = tree_client.post(
        url, json={"tag": "diabetes", "overdue_follow_up": True, "category": "慢病"}, headers=admin
    ).get_json()
    assert overdue["added"] == 1
    assert [p.resident_id for p in _persons(tree_app, second)] == [diabetic]
    # Not overdue: hypertension residents' follow-ups are in the future, so none.
    none = tree_client.post(
        url, json={"tag": "hypertension", "overdue_follow_up": True, "category": "慢病"}, headers=admin
    )
    assert none.get_json()["added"] == 0


def test_activation_dispatches_the_drafts_roster_and_later_imports_at_once(tree_app, tree_client, pc_world):
    admin = pc_world.county_admin.headers
    campaign = _campaign(tree_client, pc_world)
    items = [
        {"name": f"人{n}", "id_number": id_number(40 + n), "division_code": pc_world.division, "category": "发热"}
        for n in range(3)
    ]
    first = tree_client.post(f"{URL}/{campaign}/roster/items", json={"items": items[:2]}, headers=admin).get_json()
    assert first["dispatch"] == {}  # a draft's roster waits

    def tasks() -> list[int]:
        with tree_app.app_context():
            return list(
                db.session().scalars(sa.select(ControlTask.person_id).where(ControlTask.campaign_id == campaign))
            )

    assert tasks() == []
    active = tree_client.patch(f"{URL}/{campaign}", json={"state": "active"}, headers=admin).get_json()
    assert active["dispatch"]["created"] == 2
    second = tree_client.post(f"{URL}/{campaign}/roster/items", json={"items": items}, headers=admin).get_json()
    assert (second["added"], second["dispatch"]["created"]) == (1, 1)
    persons = [p.id for p in _persons(tree_app, campaign)]
    assert sorted(tasks()) == sorted(persons) and len(persons) == 3


def test_rekey_brings_persons_to_new_keys_and_a_re_push_still_finds_them(tree_app, tree_client, pc_world):
    from tests.family_doctor.test_rekey import KEY_1, use_keys

    campaign = _campaign(tree_client, pc_world)
    items = [
        {
            "name": "欧阳娜娜",
            "id_number": id_number(n),
            "phone": "13812345678",
            "division_code": pc_world.division,
            "category": "密接",
        }
        for n in (11, 12)
    ]
    url, admin = f"{URL}/{campaign}/roster/items", pc_world.county_admin.headers
    assert tree_client.post(url, json={"items": items}, headers=admin).get_json()["added"] == 2
    use_keys(tree_app, f"k1:{KEY_1}", f"h1:{KEY_1}")
    result = tree_app.test_cli_runner().invoke(args=["rekey"])
    assert result.exit_code == 0, result.output
    assert "precision-control persons: 2 rows, 2 re-encrypted" in result.output
    with tree_app.app_context():
        ring = privacy.keyring()
        for person in _persons(tree_app, campaign):
            assert {privacy.field_kid(person.id_cipher), privacy.field_kid(person.name_cipher)} == {"k1"}
            number = privacy.decrypt_field(person.id_cipher, ring, context="control.id_number")
            assert person.id_hash == privacy.lookup_hash(number, ring, context="control.id_number")
    again = tree_client.post(url, json={"items": items}, headers=admin).get_json()
    assert (again["added"], again["duplicates"]) == (0, 2)
    rerun = tree_app.test_cli_runner().invoke(args=["rekey"])
    assert "precision-control persons: 2 rows, 0 re-encrypted" in rerun.output


def test_no_intake_once_retention_has_passed_even_before_the_nightly_job(tree_app, tree_client, pc_world):
    from mini_apps.precision_control import retention
    from mini_apps.precision_control.models import Campaign

    admin = pc_world.county_admin.headers
    campaign = _campaign(tree_client, pc_world, categories=[])
    items = [{"name": "钱一", "id_number": id_number(40), "division_code": pc_world.division, "category": "发热"}]
    content = "\n".join([HEADER, f"孙二,{id_number(41)},,,{pc_world.division},发热,,"]).encode()

    def set_retention(day: date) -> None:
        with tree_app.app_context():
            session = db.session()
            session.get(Campaign, campaign).retention_until = day
            session.commit()

    with tree_app.app_context():
        today = retention.china_day()
    # The last day of retention (China time) still takes a roster in.
    set_retention(today)
    pushed = tree_client.post(f"{URL}/{campaign}/roster/items", json={"items": items}, headers=admin)
    assert pushed.status_code == 200 and pushed.get_json()["added"] == 1, pushed.get_json()

    # The day after, the campaign is not yet anonymised (the job runs at night) but nothing more goes in.
    set_retention(today - timedelta(days=1))
    attempts = [
        _upload(tree_client, admin, campaign, content),
        tree_client.post(f"{URL}/{campaign}/roster/items", json={"items": items}, headers=admin),
        tree_client.post(f"{URL}/{campaign}/roster/from-family-doctor", json={"tag": "高血压"}, headers=admin),
    ]
    for reply in attempts:
        error = reply.get_json()["error"]
        assert reply.status_code == 409, error
        assert (error["code"], error["message"]) == ("conflict", "专项任务的个人信息保留期限已过，不能再导入名单")
    assert len(_persons(tree_app, campaign)) == 1
    assert tree_client.get(f"{URL}/{campaign}/imports", headers=admin).get_json()["total"] == 1


CAMPAIGNS = "/api/precision-control/campaigns"


def test_a_person_dedupe_missed_is_a_409_and_nothing_is_kept(tree_app, tree_client, pc_world, monkeypatch):
    admin = pc_world.county_admin.headers
    reply = tree_client.post(URL, json=campaign_body(pc_world.county_id), headers=admin)
    campaign = reply.get_json()["id"]
    items = [
        {"name": f"钱{n}", "id_number": id_number(n), "division_code": pc_world.division, "category": "发热"}
        for n in (50, 51, 52)
    ]
    url = f"{CAMPAIGNS}/{campaign}/roster/items"
    assert tree_client.post(url, json={"items": items[:1]}, headers=admin).get_json()["added"] == 1
    monkeypatch.setattr(roster, "_drop_existing", lambda session, campaign_id, chunk, intake: chunk)
    clash = tree_client.post(url, json={"items": items}, headers=admin)
    assert clash.status_code == 409, clash.get_json()
    assert clash.get_json()["error"]["code"] == "conflict"
    assert tree_client.get(f"{CAMPAIGNS}/{campaign}/imports", headers=admin).get_json()["total"] == 1
    monkeypatch.undo()
    again = tree_client.post(url, json={"items": items}, headers=admin).get_json()
    assert (again["added"], again["duplicates"]) == (2, 1)


def test_a_failure_while_rows_stream_in_keeps_nothing(tree_app, tree_client, pc_world, monkeypatch):
    from workbench import privacy

    admin = pc_world.county_admin.headers
    campaign = tree_client.post(URL, json=campaign_body(pc_world.county_id), headers=admin).get_json()["id"]
    items = [
        {"name": f"钱{n}", "id_number": id_number(n), "division_code": pc_world.division, "category": "发热"}
        for n in (60, 61, 62)
    ]
    real, calls = privacy.encrypt_field, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6:  # the second person, while the first is already streamed
            raise RuntimeError("hsm down")
        return real(*args, **kwargs)

    monkeypatch.setattr(privacy, "encrypt_field", failing)
    reply = tree_client.post(f"{CAMPAIGNS}/{campaign}/roster/items", json={"items": items}, headers=admin)
    assert reply.status_code == 500 and reply.get_json()["error"]["code"] == "import_failed"
    monkeypatch.undo()
    assert tree_client.get(f"{CAMPAIGNS}/{campaign}/imports", headers=admin).get_json()["total"] == 0
    again = tree_client.post(f"{CAMPAIGNS}/{campaign}/roster/items", json={"items": items}, headers=admin).get_json()
    assert again["added"] == 3
