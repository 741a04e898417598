"""Compare the stored organisation tree with the sandbox's ground truth (`GET /_sandbox/truth`).

Shared by the full-sync and incremental tests: after any sync the live (non-deleted) rows must equal DingTalk's
contacts exactly — every department (id, parent, name) and every member (userid, name, sorted department ids,
active flag).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Flask
from sqlalchemy import orm

from org_sync.models import OrgMember, OrgMembership, OrgNode
from tests.support.sandbox import SandboxProcess
from workbench.db import get_db

MAX_SHOWN = 15  # differences listed in a failure message


def truth_tree(sandbox: SandboxProcess) -> tuple[str, dict[int, tuple[int | None, str]], dict[str, tuple]]:
    """The sandbox's departments as {dept_id: (parent dept_id, name)} and users as {userid: (name, depts, active)}."""
    body = sandbox.admin("GET", "truth").json()
    depts = {d["dept_id"]: (d.get("parent_id"), d["name"]) for d in body["departments"]}
    users = {u["userid"]: (u["name"], tuple(sorted(u["dept_id_list"])), bool(u["active"])) for u in body["users"]}
    return body["corp_id"], depts, users


def stored_tree(app: Flask, corp_id: str) -> tuple[dict[int, tuple[int | None, str]], dict[str, tuple]]:
    """The live rows of one corp in the same shapes as `truth_tree`."""
    with app.app_context(), get_db().engine.connect() as conn:
        parent = orm.aliased(OrgNode)
        rows = conn.execute(
            sa.select(OrgNode.dept_id, parent.dept_id, OrgNode.name)
            .select_from(OrgNode)
            .outerjoin(parent, parent.id == OrgNode.parent_id)
            .where(OrgNode.corp_id == corp_id, OrgNode.deleted_at.is_(None))
        ).all()
        depts = {dept_id: (parent_dept, name) for dept_id, parent_dept, name in rows}
        members: dict[str, Any] = {
            userid: (name, [], bool(active))
            for userid, name, active in conn.execute(
                sa.select(OrgMember.userid, OrgMember.name, OrgMember.active).where(
                    OrgMember.corp_id == corp_id, OrgMember.deleted_at.is_(None)
                )
            )
        }
        positions = conn.execute(
            sa.select(OrgMember.userid, OrgNode.dept_id)
            .select_from(OrgMembership)
            .join(OrgMember, OrgMember.id == OrgMembership.member_id)
            .join(OrgNode, OrgNode.id == OrgMembership.node_id)
            .where(OrgMember.corp_id == corp_id, OrgMember.deleted_at.is_(None), OrgNode.deleted_at.is_(None))
        )
        for userid, dept_id in positions:
            members[userid][1].append(dept_id)
    users = {userid: (name, tuple(sorted(depts_)), active) for userid, (name, depts_, active) in members.items()}
    return depts, users


def _diff(kind: str, expected: dict, actual: dict) -> list[str]:
    out = [f"{kind} {key}: missing (truth {expected[key]!r})" for key in expected.keys() - actual.keys()]
    out += [f"{kind} {key}: not in truth (stored {actual[key]!r})" for key in actual.keys() - expected.keys()]
    out += [
        f"{kind} {key}: truth {expected[key]!r} != stored {actual[key]!r}"
        for key in expected.keys() & actual.keys()
        if expected[key] != actual[key]
    ]
    return sorted(out)


def tree_differences(app: Flask, sandbox: SandboxProcess) -> list[str]:
    """Every difference between the stored tree and the sandbox's truth (empty when they match)."""
    corp_id, truth_depts, truth_users = truth_tree(sandbox)
    depts, users = stored_tree(app, corp_id)
    return _diff("department", truth_depts, depts) + _diff("user", truth_users, users)


def assert_tree_matches_truth(app: Flask, sandbox: SandboxProcess) -> None:
    """Fail with the first differences unless every department and member equals the sandbox's truth."""
    differences = tree_differences(app, sandbox)
    assert not differences, f"{len(differences)} differences from /_sandbox/truth:\n" + "\n".join(
        differences[:MAX_SHOWN]
    )
