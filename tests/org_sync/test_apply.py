"""Single-entity apply (org_sync.apply): seeding the whole sandbox tree through it in a scrambled order, moves
with their subtrees, restores, leaves, level overrides, idempotence and the change log."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest
import sqlalchemy as sa

from org_sync import apply
from org_sync.models import OrgChange, OrgMember, OrgMembership, OrgNode
from tests.org_sync.truth import assert_tree_matches_truth
from workbench import db


class DictSource:
    """A ContactSource over `/_sandbox/truth` (or hand-made dicts): what DingTalk would answer right now."""

    def __init__(self, departments: list[dict], users: list[dict]) -> None:
        self.departments = {int(d["dept_id"]): dict(d) for d in departments}
        self.users = {u["userid"]: dict(u) for u in users}
        self.calls: list[tuple[str, Any]] = []

    @classmethod
    def from_sandbox(cls, sandbox) -> DictSource:
        body = sandbox.admin("GET", "truth").json()
        return cls(body["departments"], body["users"])

    def department(self, dept_id: int) -> Mapping[str, Any] | None:
        self.calls.append(("department", dept_id))
        return self.departments.get(int(dept_id))

    def user(self, userid: str) -> Mapping[str, Any] | None:
        self.calls.append(("user", userid))
        return self.users.get(userid)


CORP = "dingsandboxcorp00001"


def seed_from_truth(app, source: DictSource, *, seed: int = 1) -> None:
    """Apply every department and user in a scrambled order: parents often come after their children, users
    before their departments, as out-of-order events would bring them."""
    depts = list(source.departments.values())
    users = list(source.users.values())
    rng = random.Random(seed)
    rng.shuffle(depts)
    rng.shuffle(users)
    with app.app_context():
        for i, dept in enumerate(depts):
            apply.upsert_department(CORP, dept, event_id=f"seed-d{i}", source=source)
            if i % 7 == 0:  # interleave people with departments
                user = users.pop()
                apply.upsert_member(CORP, user, event_id=f"seed-u{i}", source=source)
        for i, user in enumerate(users):
            apply.upsert_member(CORP, user, event_id=f"seed-u-{i}", source=source)
        db.session().commit()


def node(dept_id: int) -> OrgNode:
    return db.session().scalar(sa.select(OrgNode).where(OrgNode.dept_id == dept_id))


def changes_count() -> int:
    return db.session().scalar(sa.select(sa.func.count()).select_from(OrgChange))


def test_seeding_every_entity_in_any_order_equals_the_truth(app, sandbox):
    source = DictSource.from_sandbox(sandbox)
    seed_from_truth(app, source)
    assert_tree_matches_truth(app, sandbox)
    with app.app_context():
        session = db.session()
        # Paths and depths agree with the parents; levels match the sandbox's ground truth nearly everywhere.
        nodes = {n.id: n for n in session.scalars(sa.select(OrgNode))}
        for n in nodes.values():
            parent = nodes.get(n.parent_id)
            assert n.path == (parent.path if parent else "/") + f"{n.id}/"
            assert n.depth == (parent.depth + 1 if parent else 0)
        truth_levels = {d["dept_id"]: d["_level"] for d in source.departments.values()}
        wrong = [n.dept_id for n in nodes.values() if n.level != truth_levels[n.dept_id]]
        assert len(wrong) <= len(nodes) * 0.02, wrong[:20]
        # Mobiles are only ever stored masked.
        stored = session.scalars(sa.select(OrgMember.mobile_masked)).all()
        assert stored and all(m is None or "****" in m for m in stored)
        assert not ({u["mobile"] for u in source.users.values()} & set(stored))


def test_applying_again_changes_nothing(app, sandbox):
    source = DictSource.from_sandbox(sandbox)
    seed_from_truth(app, source)
    with app.app_context():
        before = changes_count()
        for dept in source.departments.values():
            apply.upsert_department(CORP, dept, event_id="again", source=source)
        for user in source.users.values():
            apply.upsert_member(CORP, user, event_id="again", source=source)
        db.session().commit()
        assert changes_count() == before


def _small_tree() -> DictSource:
    depts = [
        {"dept_id": 1, "name": "浙江省卫生健康委员会", "order": 0},
        {"dept_id": 10, "name": "杭州市卫生健康委员会", "parent_id": 1, "order": 1},
        {"dept_id": 20, "name": "桐庐县卫生健康局", "parent_id": 10, "order": 1},
        {"dept_id": 30, "name": "桐庐县人民医院", "parent_id": 20, "order": 1},
        {"dept_id": 31, "name": "分水镇中心卫生院", "parent_id": 30, "order": 1},
        {"dept_id": 32, "name": "内科", "parent_id": 31, "order": 1},
        {"dept_id": 33, "name": "内科一病区", "parent_id": 32, "order": 1},
        {"dept_id": 40, "name": "富阳区卫生健康局", "parent_id": 10, "order": 2},
        {"dept_id": 41, "name": "富阳区第一人民医院", "parent_id": 40, "order": 1},
    ]
    users = [
        {
            "userid": "u1",
            "unionid": "un1",
            "name": "张三",
            "title": "主治医师",
            "mobile": "13812345678",
            "active": True,
            "admin": False,
            "boss": False,
            "dept_id_list": [32, 33],
            "dept_order_list": [{"dept_id": 32, "order": 5}, {"dept_id": 33, "order": 2}],
            "leader_in_dept": [{"dept_id": 32, "leader": True}, {"dept_id": 33, "leader": False}],
        }
    ]
    return DictSource(depts, users)


def test_a_move_rewrites_the_subtree_and_reclassifies_it(app):
    source = _small_tree()
    with app.app_context():
        apply.upsert_member(CORP, source.users["u1"], event_id="e1", source=source)  # fetches every ancestor
        db.session().commit()
        assert node(33).path == f"{node(1).path}{node(10).id}/{node(20).id}/{node(30).id}/{node(31).id}/" + (
            f"{node(32).id}/{node(33).id}/"
        )
        assert (node(31).level, node(32).level, node(33).level) == (
            "member_institution",
            "internal_department",
            "internal_department",
        )
        # The township hospital is handed to another medical community in another county.
        source.departments[31] |= {"parent_id": 41}
        apply.upsert_department(CORP, source.departments[31], event_id="e2", source=source)
        db.session().commit()
        db.session().expire_all()
        assert node(31).parent_id == node(41).id
        assert node(33).path.startswith(node(41).path + f"{node(31).id}/")
        assert (node(31).depth, node(32).depth, node(33).depth) == (4, 5, 6)
        logged = db.session().scalars(sa.select(OrgChange).where(OrgChange.event_id == "e2")).all()
        # The unknown new parents were fetched and created first, then the move was logged.
        assert [(c.entity_key, c.action) for c in logged] == [("40", "create"), ("41", "create"), ("31", "move")]
        assert logged[-1].changes["parent_id"] == [30, 41]

        # An institution's internal department re-hung at the institution's level becomes... still internal.
        source.departments[33] |= {"parent_id": 31, "name": "内科护理单元"}
        apply.upsert_department(CORP, source.departments[33], event_id="e3", source=source)
        db.session().commit()
        assert node(33).parent_id == node(31).id and node(33).depth == 5
        assert node(33).name == "内科护理单元"


def test_a_move_under_a_node_still_below_it_fetches_the_parent_first(app):
    """Out of order: 32 is moved under 33, which DingTalk has already moved out of 32's subtree."""
    source = _small_tree()
    with app.app_context():
        for d in (1, 10, 20, 30, 31, 32, 33):
            apply.upsert_department(CORP, source.departments[d], event_id="seed", source=source)
        source.departments[33] |= {"parent_id": 31}
        source.departments[32] |= {"parent_id": 33}
        apply.upsert_department(CORP, source.departments[32], event_id="e", source=source)
        db.session().commit()
        assert node(33).parent_id == node(31).id
        assert node(32).parent_id == node(33).id
        assert node(32).path == node(33).path + f"{node(32).id}/"


def test_leave_and_return_soft_delete_and_restore(app):
    source = _small_tree()
    with app.app_context():
        session = db.session()
        apply.sync_user(CORP, "u1", event_id="add", source=source)
        session.commit()
        member = apply.member_by_userid(CORP, "u1")
        assert member.mobile_masked == "138****5678"
        assert {(m.node_id, m.is_leader, m.sort_order) for m in session.scalars(sa.select(OrgMembership))} == {
            (node(32).id, True, 5),
            (node(33).id, False, 2),
        }
        user = source.users.pop("u1")
        apply.sync_user(CORP, "u1", event_id="leave", source=source)
        session.commit()
        assert member.deleted_at is not None
        assert session.scalar(sa.select(sa.func.count()).select_from(OrgMembership)) == 0
        actions = session.scalars(sa.select(OrgChange.action).where(OrgChange.event_id == "leave")).all()
        assert sorted(actions) == ["delete", "delete", "delete"]  # the member and two memberships

        source.users["u1"] = user | {"dept_id_list": [31], "dept_order_list": [], "leader_in_dept": []}
        apply.sync_user(CORP, "u1", event_id="back", source=source)
        session.commit()
        assert member.deleted_at is None
        [restore] = session.scalars(
            sa.select(OrgChange).where(OrgChange.event_id == "back", OrgChange.entity == "member")
        ).all()
        assert restore.action == "restore"
        assert [m.node_id for m in session.scalars(sa.select(OrgMembership))] == [node(31).id]


def test_removing_a_department_places_what_is_still_under_it(app):
    """DingTalk deletes only empty departments; here the moves out have not been applied yet."""
    source = _small_tree()
    with app.app_context():
        session = db.session()
        apply.sync_user(CORP, "u1", event_id="add", source=source)
        source.departments[33] |= {"parent_id": 31}
        del source.departments[32]
        source.users["u1"] |= {"dept_id_list": [33], "dept_order_list": [{"dept_id": 33, "order": 0}]}
        source.users["u1"]["leader_in_dept"] = []
        apply.sync_department(CORP, 32, event_id="remove", source=source)
        session.commit()
        assert node(32).deleted_at is not None
        assert node(33).deleted_at is None and node(33).parent_id == node(31).id
        memberships = session.scalars(sa.select(OrgMembership)).all()
        assert [m.node_id for m in memberships] == [node(33).id]
        # A re-created department (same id) is restored.
        source.departments[32] = {"dept_id": 32, "name": "内科", "parent_id": 31, "order": 1}
        apply.sync_department(CORP, 32, event_id="again", source=source)
        session.commit()
        assert node(32).deleted_at is None
        actions = session.scalars(sa.select(OrgChange.action).where(OrgChange.event_id == "again")).all()
        assert actions == ["restore"]


@pytest.mark.parametrize("override", ["medical_community_lead", None])
def test_an_override_survives_reapplying_the_department(app, override):
    source = _small_tree()
    with app.app_context():
        apply.upsert_department(CORP, source.departments[33], event_id="seed", source=source)
        target = node(31)
        target.level_override = override
        apply.reclassify_node(target)
        apply.upsert_department(CORP, source.departments[31] | {"name": "分水镇卫生院"}, event_id="e", source=source)
        db.session().commit()
        assert node(31).level == (override or "member_institution")
        assert node(31).level_source == ("override" if override else "name")
        assert node(31).level_override == override


def test_a_rename_that_changes_a_level_reclassifies_the_subtree(app):
    """Beneath an internal department everything is internal; once it is renamed into a hospital, the township
    hospital below it becomes a member institution, and that change is logged."""
    source = _small_tree()
    source.departments[50] = {"dept_id": 50, "name": "医共体筹建办", "parent_id": 20, "order": 9}
    source.departments[51] = {"dept_id": 51, "name": "横村镇卫生院", "parent_id": 50, "order": 1}
    source.departments[52] = {"dept_id": 52, "name": "全科", "parent_id": 51, "order": 1}
    with app.app_context():
        apply.upsert_department(CORP, source.departments[52], event_id="seed", source=source)
        assert [node(d).level for d in (50, 51, 52)] == ["internal_department"] * 3
        source.departments[50]["name"] = "桐庐县第二人民医院"
        apply.sync_department(CORP, 50, event_id="rename", source=source)
        db.session().commit()
        assert [node(d).level for d in (50, 51, 52)] == [
            "medical_community_lead",
            "member_institution",
            "internal_department",
        ]
        assert node(50).layer == "operational"
        logged = {
            (c.entity_key, c.action): c.changes
            for c in db.session().scalars(sa.select(OrgChange).where(OrgChange.event_id == "rename"))
        }
        assert logged[("50", "rename")]["name"] == ["医共体筹建办", "桐庐县第二人民医院"]
        assert logged[("51", "update")]["level"] == ["internal_department", "member_institution"]
        assert "level" not in logged.get(("52", "update"), {})  # still internal (now by its name)


@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite admits one writer at a time by itself
def test_structural_writes_of_one_corp_are_serialised(app, backend):
    """Two workers moving overlapping subtrees would leave stale paths: the second waits for the first."""
    events: list[tuple[str, str]] = []

    def worker(name: str, corp_id: str, hold: float) -> None:
        with app.app_context():
            apply.lock_tree(corp_id)
            apply.lock_tree(corp_id)  # re-entrant within the transaction
            events.append((name, "locked"))
            time.sleep(hold)
            events.append((name, "commit"))
            db.session().commit()

    first = threading.Thread(target=worker, args=("a", CORP, 0.6))
    first.start()
    time.sleep(0.2)
    second = threading.Thread(target=worker, args=("b", CORP, 0))
    other_corp = threading.Thread(target=worker, args=("c", "dingothercorp", 0))
    second.start()
    other_corp.start()
    for thread in (first, second, other_corp):
        thread.join(10)
    assert events.index(("b", "locked")) > events.index(("a", "commit"))
    assert events.index(("c", "locked")) < events.index(("a", "commit"))  # other corps are not held up


def _apply_at_once(app, source: DictSource, user: dict, workers: int, tag: str) -> list[BaseException]:
    """`workers` threads (each its own session, like RQ workers) apply the same user at the same moment."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(workers)

    def work(i: int) -> None:
        with app.app_context():
            session = db.session()
            try:
                barrier.wait(10)
                apply.upsert_member(CORP, user, event_id=f"{tag}w{i}", source=source)
                session.commit()
            except BaseException as exc:
                session.rollback()
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


_ADDED = ("membership", "create")


def _logged(tag: str) -> list[tuple[str, str, str]]:
    return [
        tuple(row)
        for row in db.session().execute(
            sa.select(OrgChange.entity, OrgChange.action, OrgChange.entity_key).where(
                OrgChange.event_id.like(f"{tag}w%")
            )
        )
    ]


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_concurrent_applies_of_one_user_never_collide(app, backend):
    """Several workers applying events of the same user at once (each RQ worker handling a `user_dept_change` of
    the same person) used to both read "not in department X" and both insert that membership: a UniqueViolation
    on pk_org_memberships (or on the member itself, for a new user), retried by the event handler. Under the
    member's lock each worker reads what the previous one committed: nobody fails, and the change log records
    each change once. (Departments none of them had stored yet, from round 5 on, are created once too: the tree
    lock, which on SQLite now really takes the writer lock.)"""
    workers, rounds = 6, 10
    source = _small_tree()
    dept_ids = sorted(source.departments)
    with app.app_context():
        apply.upsert_member(CORP, source.users["u1"], event_id="seed", source=source)
        db.session().commit()
        previous = set(source.users["u1"]["dept_id_list"])
    for r in range(rounds):
        depts = [dept_ids[(r + i) % len(dept_ids)] for i in range(3)]  # two kept, one new each round
        # Only the departments change, as in a user_dept_change (a changed name would serialise the workers on
        # the member row's own UPDATE, which is why the race was rare).
        user = source.users["u1"] | {
            "dept_id_list": depts,
            "dept_order_list": [{"dept_id": d, "order": r} for d in depts],
            "leader_in_dept": [{"dept_id": depts[0], "leader": True}],
        }
        errors = _apply_at_once(app, source, user, workers, f"r{r}")
        assert errors == [], f"round {r}: {errors[0]!r}"
        with app.app_context():
            stored = set(
                db.session().scalars(
                    sa.select(OrgNode.dept_id)
                    .join(OrgMembership, OrgMembership.node_id == OrgNode.id)
                    .join(OrgMember, OrgMember.id == OrgMembership.member_id)
                    .where(OrgMember.userid == "u1")
                )
            )
            logged = _logged(f"r{r}")
        assert stored == set(depts)
        added = sorted(int(key.split("@")[1]) for entity, action, key in logged if (entity, action) == _ADDED)
        assert added == sorted(set(depts) - previous)  # each new position logged once, by one worker
        assert [action for entity, action, _ in logged if entity == "member"] == []
        previous = set(depts)

    # A user nobody has stored yet: the member is created once, the others find it.
    newcomer = source.users["u1"] | {"userid": "u2", "unionid": "un2", "name": "李四"}
    assert _apply_at_once(app, source, newcomer, workers, "new") == []
    with app.app_context():
        logged = _logged("new")
        assert db.session().scalar(sa.select(sa.func.count()).where(OrgMember.userid == "u2")) == 1
    assert sorted((entity, action) for entity, action, _ in logged) == [("member", "create"), _ADDED, _ADDED]
