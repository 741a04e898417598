"""Chronic-disease follow-ups: scheduled quarterly for tagged residents, reminded once, marked done over the API
(which schedules the next), moved along when the resident changes team; against the sandbox with jobs running."""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa

from mini_apps.family_doctor import reminders, service
from mini_apps.family_doctor.models import FollowUp
from tests.bot.conftest import sandbox_messages
from tests.conftest import run_jobs
from tests.family_doctor.conftest import World
from tests.family_doctor.test_notices import cards_about, empty_team, resident_account, sign, userid_of
from workbench import db
from workbench.audit import AuditRecord

API = "/api/family-doctor"


def open_follow_ups(app, resident_id: int) -> list[FollowUp]:
    with app.app_context():
        return (
            db.session()
            .scalars(
                sa.select(FollowUp)
                .where(FollowUp.resident_id == resident_id, FollowUp.done_on.is_(None))
                .order_by(FollowUp.kind)
            )
            .all()
        )


def test_add_months_is_the_same_in_python_and_on_both_databases(tree_app):
    days = [date(2026, 1, 15), date(2026, 11, 30), date(2026, 12, 31), date(2027, 8, 31), date(2028, 2, 29)]
    with tree_app.app_context():
        session = db.session()
        for day in days:
            for months in (3, -3, 1):
                in_sql = session.scalar(sa.select(reminders.add_months_sql(sa.literal(day, sa.Date), months)))
                assert in_sql == reminders.add_months(day, months), (day, months)
    assert reminders.add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)
    assert reminders.earliest_done_on(date(2027, 2, 28)) == date(2026, 12, 1)


def test_follow_ups_are_scheduled_quarterly_reminded_once_done_and_the_next_scheduled(
    tree_app, tree_client, sandbox, world: World
):
    client = tree_client
    today = service.today()
    account = resident_account(sandbox, "周九")
    since = str(len(sandbox_messages(sandbox)))
    start = today - timedelta(days=10)
    chronic = sign(
        client,
        world.doctor,
        world.team_id,
        401,
        name="周九",
        userid=account,
        tags=["hypertension", "diabetes"],
        start_date=start.isoformat(),
    )
    # Signed two years ago with no follow-up on record: the first is due the day it is scheduled.
    old_start = service.add_years(today, -1) + timedelta(days=40)
    veteran = sign(
        client,
        world.doctor,
        world.team_id,
        402,
        name="吴十",
        userid=None,
        tags=["diabetes"],
        start_date=old_start.isoformat(),
    )
    healthy = sign(client, world.doctor, world.team_id, 403, name="郑一", userid=None, tags=["elderly"])
    run_jobs(tree_app)

    with tree_app.app_context():
        assert reminders.schedule_follow_ups(today) == 3
        assert reminders.schedule_follow_ups(today) == 0  # exactly one open per disease
    due = reminders.add_months(start, 3)
    assert [(f.kind, f.due_date, f.team_id) for f in open_follow_ups(tree_app, chronic["id"])] == [
        ("diabetes", due, world.team_id),
        ("hypertension", due, world.team_id),
    ]
    assert [(f.kind, f.due_date) for f in open_follow_ups(tree_app, veteran["id"])] == [("diabetes", today)]
    assert open_follow_ups(tree_app, healthy["id"]) == []

    # Reminded when due within 7 days, once per follow-up.
    with tree_app.app_context():
        assert reminders.remind_follow_ups(due - timedelta(days=8)) == {"sent": 0, "failed": 0}
        assert reminders.remind_follow_ups(due - timedelta(days=7)) == {"sent": 2, "failed": 0}
        assert reminders.remind_follow_ups(due - timedelta(days=6)) == {"sent": 0, "failed": 0}
        assert reminders.remind_follow_ups(due + timedelta(days=3)) == {"sent": 0, "failed": 0}
    assert all(f.reminded_at is not None for f in open_follow_ups(tree_app, chronic["id"]))
    run_jobs(tree_app)
    cards = cards_about(sandbox, account, since)
    texts = sorted(c["card"]["cardData"]["cardParamMap"]["markdown"] for c in cards)
    when = f"{due.month}月{due.day}日" if due.year == (due - timedelta(days=7)).year else f"{due.year}年{due.month}月"
    assert len(texts) == 2
    assert "您的糖尿病季度随访将于" in texts[0] + texts[1] and "您的高血压季度随访将于" in texts[0] + texts[1]
    assert all(when in t for t in texts)
    doctor = userid_of(client, world.doctor)
    assert all(set(c["card"]["recipients"]) == {account, doctor} for c in cards)

    # The list, for the team: open first; audited as a read of the resident.
    reply = client.get(f"{API}/residents/{chronic['id']}/follow-ups", headers=world.doctor)
    assert reply.status_code == 200, reply.get_json()
    items = reply.get_json()["items"]
    assert [(i["kind"], i["state"], i["due_date"]) for i in items] == [  # same due date: the later-made first
        ("diabetes", "open", due.isoformat()),
        ("hypertension", "open", due.isoformat()),
    ]
    with tree_app.app_context():
        read = (
            db.session()
            .scalars(
                sa.select(AuditRecord).where(
                    AuditRecord.action == "resident.follow_ups.read", AuditRecord.resource_id == str(chronic["id"])
                )
            )
            .all()
        )
        assert len(read) == 1
    hypertension = next(i for i in items if i["kind"] == "hypertension")

    # Done today: the next is due a quarter later, open and not yet reminded.
    reply = client.post(
        f"{API}/follow-ups/{hypertension['id']}/done", json={"note": "血压 132/84，继续服药"}, headers=world.doctor
    )
    assert reply.status_code == 200, reply.get_json()
    body = reply.get_json()
    assert body["follow_up"]["state"] == "done" and body["follow_up"]["done_on"] == today.isoformat()
    assert body["next"]["kind"] == "hypertension" and body["next"]["state"] == "open"
    assert body["next"]["due_date"] == reminders.add_months(today, 3).isoformat()
    assert body["next"]["reminded_at"] is None
    again = client.post(f"{API}/follow-ups/{hypertension['id']}/done", json={}, headers=world.doctor)
    assert again.status_code == 409
    with tree_app.app_context():
        assert reminders.schedule_follow_ups(today) == 0  # the next one is the open one
    assert sorted((f.kind, f.due_date) for f in open_follow_ups(tree_app, chronic["id"])) == [
        ("diabetes", due),
        ("hypertension", reminders.add_months(today, 3)),
    ]


def test_the_done_endpoint_checks_its_input_and_scope(tree_app, tree_client, sandbox, world: World):
    client = tree_client
    today = service.today()
    start = today - timedelta(days=5)
    resident = sign(
        client,
        world.doctor,
        world.team_id,
        501,
        name="冯二",
        userid=None,
        tags=["hypertension"],
        start_date=start.isoformat(),
    )
    with tree_app.app_context():
        assert reminders.schedule_follow_ups(today) == 1
    [follow_up] = open_follow_ups(tree_app, resident["id"])
    url = f"{API}/follow-ups/{follow_up.id}/done"
    earliest = reminders.earliest_done_on(follow_up.due_date)

    for body, field in [
        ({"done_on": (today + timedelta(days=1)).isoformat()}, "done_on"),  # in the future
        ({"done_on": (earliest - timedelta(days=1)).isoformat()}, "done_on"),  # the quarter before
        ({"done_on": "昨天"}, "done_on"),
        ({"note": "很长" * 200}, "note"),
        ({"done_on": today.isoformat(), "surprise": 1}, "surprise"),
    ]:
        reply = client.post(url, json=body, headers=world.doctor)
        assert reply.status_code == 422, (body, reply.get_json())
        assert reply.get_json()["error"]["field"] == field, (body, reply.get_json())

    # Outside the team's scope: another county's admin, a doctor of the same institution not on the team.
    for headers in (world.other_county_admin, world.colleague):
        assert client.post(url, json={}, headers=headers).status_code == 404
        assert client.get(f"{API}/residents/{resident['id']}/follow-ups", headers=headers).status_code == 404
    assert client.post(f"{API}/follow-ups/999999/done", json={}, headers=world.doctor).status_code == 404
    assert open_follow_ups(tree_app, resident["id"])[0].done_on is None

    # The county admin above the team may record it; the earliest allowed day is accepted.
    reply = client.post(url, json={"done_on": earliest.isoformat()}, headers=world.county_admin)
    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json()["next"]["due_date"] == reminders.add_months(earliest, 3).isoformat()
    assert reminders.add_months(earliest, 3) > follow_up.due_date


def test_open_follow_ups_move_with_a_resident_who_changes_team(tree_app, tree_client, sandbox, world: World):
    client = tree_client
    today = service.today()
    other_team = empty_team(client, world, "第三家庭医生团队")
    resident = sign(
        client,
        world.county_admin,
        world.team_id,
        601,
        name="陈三",
        userid=None,
        tags=["diabetes"],
        start_date=(today - timedelta(days=30)).isoformat(),
    )
    with tree_app.app_context():
        assert reminders.schedule_follow_ups(today) == 1
    reply = client.post(
        f"{API}/contracts/{resident['contract']['id']}/renew", json={"team_id": other_team}, headers=world.county_admin
    )
    assert reply.status_code == 201, reply.get_json()
    with tree_app.app_context():
        assert reminders.schedule_follow_ups(today) == 0
    [moved] = open_follow_ups(tree_app, resident["id"])
    assert moved.team_id == other_team
    # The old team's doctor no longer sees the resident's follow-ups; the admin above both does.
    assert client.get(f"{API}/residents/{resident['id']}/follow-ups", headers=world.doctor).status_code == 404
    assert client.get(f"{API}/residents/{resident['id']}/follow-ups", headers=world.county_admin).status_code == 200
