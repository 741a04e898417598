"""Manual reports approved through the bot's approval cards, on both backends: an approved report counts (values
current, the roll-up and the figures API show it), a refused one does not; who may report and read; item checks
as the feed's; a pending duplicate; evidence uploads and the qualitative verdict with its evidence."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from bot import cards as bot_cards
from bot.models import BotCard
from supervision.models import Indicator, IndicatorRollup, IndicatorSubmission, IndicatorValue
from tests.conftest import run_jobs
from tests.supervision.conftest import Person, SupervisionWorld
from tests.support.auth import bearer, sign_in
from tests.support.sandbox import free_port
from tests.support.tree import node_id
from workbench import db
from workbench.audit import AuditRecord

API = "/api/supervision/reports"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def served(tree_app) -> Iterator[str]:
    """The workbench on a real port with the card callback registered, so sandbox clicks reach it."""
    port = free_port()
    server = make_server("127.0.0.1", port, tree_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tree_app.app_context():
        bot_cards.register_callback(f"http://127.0.0.1:{port}/bot/card/callback")
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


@dataclass
class ReportWorld:
    sup: SupervisionWorld
    institution_id: int  # the clinician's institution
    approver: Person  # a colleague granted institution_admin on it by the county admin
    other_clinician: Person  # a clinician of another county's institution


@pytest.fixture
def world(tree_app, tree_client, sandbox, sup_world: SupervisionWorld) -> ReportWorld:
    t = sup_world.tree
    user = next(u for u in t.users if u["userid"] == sup_world.clinician.userid)
    institution = t.unit_of(user["dept_id_list"][0])
    colleague = next(
        u
        for u in t.users
        if u["userid"] != user["userid"] and any(t.unit_of(d) == institution for d in u["dept_id_list"])
    )
    institution_id = node_id(tree_app, institution)
    granted = tree_client.post(
        "/api/auth/grants",
        json={"userid": colleague["userid"], "role": "institution_admin", "node_id": institution_id},
        headers=sup_world.county_admin.headers,
    )
    assert granted.status_code == 201, granted.get_json()
    county = t.county_of(institution)
    stranger = next(
        u
        for u, d in t.at("internal_department")
        if t.county_of(d) not in (None, county) and t.level(t.unit_of(d)) == "member_institution"
    )

    def person(u: dict) -> Person:
        return Person(u["userid"], u["name"], bearer(sign_in(tree_client, sandbox, u["userid"])))

    return ReportWorld(sup_world, institution_id, person(colleague), person(stranger))


def _tracks(app, approval_id: int) -> dict[int, str]:
    """The approval's card out_track_ids by approver index."""
    with app.app_context():
        found = db.session().scalars(
            sa.select(BotCard.out_track_id).where(BotCard.out_track_id.like(f"bot-approval:{approval_id}:%"))
        )
        return {int(track.split(":")[2]): track for track in found}


def _click(app, sandbox, report: dict, userid: str, action: str) -> None:
    """The approver taps 同意/拒绝 on their card in the sandbox; then the callback and the roll-up run."""
    run_jobs(app)  # deliver the cards
    index = report["approval"]["approvers"].index(userid)
    track = _tracks(app, report["approval"]["id"])[index]
    reply = sandbox.admin("POST", f"cards/{track}/click", json={"userid": userid, "action_id": action})
    assert reply.status_code == 200, reply.text
    assert "apply_error" not in reply.json(), reply.json()
    run_jobs(app)  # the approval's callback
    run_jobs(app)  # the recomputation it queued after its commit


def _values(app, unit_id: int, code: str, period: str) -> list[IndicatorValue]:
    with app.app_context():
        session = db.session()
        rows = session.scalars(
            sa.select(IndicatorValue)
            .join(Indicator, Indicator.id == IndicatorValue.indicator_id)
            .where(Indicator.code == code, IndicatorValue.unit_id == unit_id, IndicatorValue.period == period)
            .order_by(IndicatorValue.id)
        ).all()
        session.expunge_all()
        return list(rows)


def _rollup(app, node: int, code: str, period: str) -> IndicatorRollup | None:
    with app.app_context():
        session = db.session()
        row = session.scalar(
            sa.select(IndicatorRollup)
            .join(Indicator, Indicator.id == IndicatorRollup.indicator_id)
            .where(Indicator.code == code, IndicatorRollup.node_id == node, IndicatorRollup.period == period)
        )
        if row is not None:
            session.expunge(row)
        return row


def _report(client, person: Person, unit_id: int, period: str, items: list[dict], **extra):
    return client.post(
        API, json={"unit_id": unit_id, "period": period, "items": items, **extra}, headers=person.headers
    )


FULFILMENT = {"indicator": "FD-FULFILMENT", "numerator": 45, "denominator": 50}


def test_a_report_approved_from_the_card_counts_and_shows_in_the_figures(
    tree_app, tree_client, sandbox, world: ReportWorld, served
):
    w = world
    created = _report(tree_client, w.sup.clinician, w.institution_id, "2026-Q3", [FULFILMENT], note="季度履约")
    assert created.status_code == 201, created.get_json()
    report = created.get_json()
    assert report["state"] == "pending" and report["period"] == "2026-Q3"
    assert report["approval"]["approvers"] and w.sup.clinician.userid not in report["approval"]["approvers"]
    assert w.approver.userid in report["approval"]["approvers"]
    assert _values(tree_app, w.institution_id, "FD-FULFILMENT", "2026-Q3") == []  # nothing counts yet
    with tree_app.app_context():
        approval_form = db.session().get(IndicatorSubmission, report["id"]).payload
    assert approval_form[0]["numerator"] == "45" and approval_form[0]["denominator"] == "50"

    # The approver reads it (members of the unit and its administrators may), then agrees on the card.
    seen = tree_client.get(f"{API}/{report['id']}", headers=w.approver.headers)
    assert seen.status_code == 200 and seen.get_json()["items"][0]["indicator"] == "FD-FULFILMENT"
    _click(tree_app, sandbox, report, w.approver.userid, "approval.agree")

    done = tree_client.get(f"{API}/{report['id']}", headers=w.sup.clinician.headers).get_json()
    assert done["state"] == "accepted" and done["decided_at"] and done["approval"]["result"] == "agree"
    [value] = _values(tree_app, w.institution_id, "FD-FULFILMENT", "2026-Q3")
    assert value.is_current and value.source == f"manual:{w.institution_id}" and value.submission_id == report["id"]
    assert (float(value.numerator), float(value.denominator)) == (45, 50)
    rolled = _rollup(tree_app, w.sup.county_id, "FD-FULFILMENT", "2026-Q3")
    assert rolled is not None and float(rolled.numerator) == 45 and float(rolled.denominator) == 50
    assert rolled.units_reported == 1

    figures = tree_client.get(
        "/api/supervision/figures",
        query_string={"node_id": w.sup.county_id, "period": "2026-Q3"},
        headers=w.sup.county_admin.headers,
    )
    assert figures.status_code == 200, figures.get_json()
    [item] = [i for i in figures.get_json()["node"]["indicators"] if i["code"] == "FD-FULFILMENT"]
    assert item["value"] == pytest.approx(90.0) and item["numerator"] == 45
    own = tree_client.get(
        "/api/supervision/figures",
        query_string={"node_id": w.institution_id, "period": "2026-Q3"},
        headers=w.sup.county_admin.headers,
    ).get_json()
    [mine] = [i for i in own["node"]["indicators"] if i["code"] == "FD-FULFILMENT"]
    assert mine["value"] == pytest.approx(90.0) and mine["units_reported"] == 1

    # A second report correcting the figure: versioned, the first stays as history.
    again = _report(tree_client, w.sup.clinician, w.institution_id, "2026-Q3", [FULFILMENT | {"numerator": 40}])
    assert again.status_code == 201, again.get_json()
    _click(tree_app, sandbox, again.get_json(), w.approver.userid, "approval.agree")
    old, new = _values(tree_app, w.institution_id, "FD-FULFILMENT", "2026-Q3")
    assert (old.is_current, new.is_current, new.supersedes_id) == (False, True, old.id)
    assert float(_rollup(tree_app, w.sup.county_id, "FD-FULFILMENT", "2026-Q3").numerator) == 40

    listed = tree_client.get(
        API, query_string={"unit_id": w.institution_id, "state": "accepted"}, headers=w.sup.county_admin.headers
    )
    assert listed.status_code == 200 and listed.get_json()["total"] == 2
    assert (
        tree_client.get(API, query_string={"period": "2026-Q2"}, headers=w.sup.clinician.headers).get_json()["total"]
        == 0
    )
    with tree_app.app_context():
        actions = set(
            db.session().scalars(sa.select(AuditRecord.action).where(AuditRecord.action.like("supervision.report.%")))
        )
    assert {"supervision.report.create", "supervision.report.accepted"} <= actions


def test_a_refused_report_stores_nothing_and_keeps_the_reason(
    tree_app, tree_client, sandbox, world: ReportWorld, served
):
    w = world
    created = _report(tree_client, w.sup.clinician, w.institution_id, "2026-Q2", [FULFILMENT])
    assert created.status_code == 201, created.get_json()
    report = created.get_json()
    _click(tree_app, sandbox, report, w.approver.userid, "approval.refuse")
    done = tree_client.get(f"{API}/{report['id']}", headers=w.sup.clinician.headers).get_json()
    assert done["state"] == "refused" and w.approver.userid in done["decision_reason"] and done["decided_at"]
    assert _values(tree_app, w.institution_id, "FD-FULFILMENT", "2026-Q2") == []
    rolled = _rollup(tree_app, w.sup.county_id, "FD-FULFILMENT", "2026-Q2")
    assert rolled is None or rolled.numerator is None
    # Refused is decided: the same indicator may be reported again.
    assert _report(tree_client, w.sup.clinician, w.institution_id, "2026-Q2", [FULFILMENT]).status_code == 201


def test_who_may_report_and_read(tree_app, tree_client, world: ReportWorld):
    w = world
    outsider = _report(tree_client, w.other_clinician, w.institution_id, "2026-Q3", [FULFILMENT])
    assert outsider.status_code in (403, 404) and outsider.get_json()["error"]["field"] == "unit_id"
    # The county admin administers the institution but does not work in it: may read, not report for it.
    admin = _report(tree_client, w.sup.county_admin, w.institution_id, "2026-Q3", [FULFILMENT])
    assert admin.status_code == 403
    created = _report(tree_client, w.sup.clinician, w.institution_id, "2026-Q3", [FULFILMENT]).get_json()
    assert tree_client.get(f"{API}/{created['id']}", headers=w.other_clinician.headers).status_code == 404
    assert tree_client.get(f"{API}/{created['id']}", headers=w.sup.county_admin.headers).status_code == 200
    assert tree_client.get(API, headers=w.other_clinician.headers).get_json()["total"] == 0
    assert (
        tree_client.get(API, query_string={"unit_id": w.institution_id}, headers=w.other_clinician.headers).status_code
        == 404
    )
    assert tree_client.post(API, json={}).status_code == 401


def test_items_are_checked_as_the_feed_does_and_nothing_is_stored(tree_app, tree_client, world: ReportWorld):
    w = world
    bad = _report(
        tree_client,
        w.sup.clinician,
        w.institution_id,
        "2026-Q3",
        [
            {"indicator": "OP-VISITS", "numerator": 10},  # automatic only
            {"indicator": "FD-FULFILMENT", "numerator": 60, "denominator": 50},  # above a bounded denominator
            {"indicator": "NOPE", "numerator": 1},
            {"indicator": "RES-DOCTORS", "numerator": -1},  # yearly, and negative
            {"indicator": "FD-FULFILMENT", "numerator": "4", "denominator": 5, "colour": "red"},
        ],
    )
    assert bad.status_code == 422
    error = bad.get_json()["error"]
    fields = {e["field"] for e in error["errors"]}
    assert error["field"] == "items.0.indicator"
    assert {
        "items.0.indicator",
        "items.1.numerator",
        "items.2.indicator",
        "items.3.numerator",
        "items.3.indicator",
        "items.4.numerator",
        "items.4.colour",
    } <= fields
    county_only = _report(
        tree_client,
        w.sup.clinician,
        w.institution_id,
        "2025",
        [{"indicator": "NCM-01", "numerator": 1, "denominator": 1, "verdict": "已统一"}],
    )
    assert county_only.status_code == 422 and county_only.get_json()["error"]["field"] == "items.0.indicator"
    future = _report(tree_client, w.sup.clinician, w.institution_id, "2099-Q1", [FULFILMENT])
    assert future.status_code == 422 and future.get_json()["error"]["field"] == "period"
    floats = tree_client.post(
        API,
        data=b'{"unit_id": %d, "period": "2026-Q3", "items": [{"indicator": "FD-FULFILMENT", "numerator": 1e400, '
        b'"denominator": 5}]}' % w.institution_id,
        content_type="application/json",
        headers=w.sup.clinician.headers,
    )
    assert floats.status_code == 422 and floats.get_json()["error"]["field"] == "items.0.numerator"
    assert (
        tree_client.post(API, data=b"{", content_type="application/json", headers=w.sup.clinician.headers).status_code
        == 400
    )
    with tree_app.app_context():
        assert (
            db.session().scalar(
                sa.select(sa.func.count()).select_from(IndicatorSubmission).where(IndicatorSubmission.kind == "manual")
            )
            == 0
        )


def test_a_pending_report_of_the_same_indicator_and_period_is_a_conflict(tree_app, tree_client, world: ReportWorld):
    w = world
    first = _report(tree_client, w.sup.clinician, w.institution_id, "2026-Q3", [FULFILMENT])
    assert first.status_code == 201
    second = _report(tree_client, w.sup.clinician, w.institution_id, "2026-Q3", [FULFILMENT | {"numerator": 44}])
    assert second.status_code == 409 and second.get_json()["error"]["report_id"] == first.get_json()["id"]
    # Another period is no conflict.
    assert _report(tree_client, w.sup.clinician, w.institution_id, "2026-Q1", [FULFILMENT]).status_code == 201


def _upload(client, person: Person, report_id: int, indicator: str, name: str, content: bytes):
    return client.post(
        f"{API}/{report_id}/evidence",
        data={"indicator": indicator, "file": (io.BytesIO(content), name)},
        content_type="multipart/form-data",
        headers=person.headers,
    )


def test_evidence_uploads_are_checked(tree_app, tree_client, world: ReportWorld):
    w = world
    report = _report(tree_client, w.sup.clinician, w.institution_id, "2026-Q3", [FULFILMENT]).get_json()
    ok = _upload(tree_client, w.sup.clinician, report["id"], "FD-FULFILMENT", "履约记录.pdf", PDF)
    assert ok.status_code == 201, ok.get_json()
    assert ok.get_json()["content_type"] == "application/pdf" and len(ok.get_json()["sha256"]) == 64
    cases = [
        ("notes.txt", b"just some text", 415),
        ("setup.pdf", b"MZ\x90\x00" + b"\x00" * 100, 415),
        ("run.pdf", b"#!/bin/sh\nrm -rf /\n", 415),
        ("photo.pdf", PNG, 415),  # the extension disagrees with the bytes
        ("big.pdf", b"%PDF-" + b"\x00" * (20 * 1024 * 1024), 413),
    ]
    for name, content, status in cases:
        reply = _upload(tree_client, w.sup.clinician, report["id"], "FD-FULFILMENT", name, content)
        assert reply.status_code == status and reply.get_json()["error"]["field"] == "file", name
    wrong = _upload(tree_client, w.sup.clinician, report["id"], "NCM-01", "a.pdf", PDF)
    assert wrong.status_code == 422 and wrong.get_json()["error"]["field"] == "indicator"
    assert _upload(tree_client, w.approver, report["id"], "FD-FULFILMENT", "a.pdf", PDF).status_code == 403
    assert _upload(tree_client, w.other_clinician, report["id"], "FD-FULFILMENT", "a.pdf", PDF).status_code == 404

    evidence_id = ok.get_json()["id"]
    for person in (w.sup.clinician, w.approver, w.sup.county_admin):
        got = tree_client.get(f"{API}/{report['id']}/evidence/{evidence_id}", headers=person.headers)
        assert got.status_code == 200 and got.data == PDF and got.headers["Cache-Control"] == "no-store"
    assert (
        tree_client.get(f"{API}/{report['id']}/evidence/{evidence_id}", headers=w.other_clinician.headers).status_code
        == 404
    )
    listed = tree_client.get(f"{API}/{report['id']}", headers=w.approver.headers).get_json()
    assert [e["id"] for e in listed["evidence"]] == [evidence_id]
    with tree_app.app_context():
        reads = db.session().scalar(
            sa.select(sa.func.count())
            .select_from(AuditRecord)
            .where(AuditRecord.action == "supervision.report.evidence.read")
        )
    assert reads == 3


def test_qualitative_verdicts_with_evidence_count_one_or_zero(
    tree_app, tree_client, sandbox, world: ReportWorld, served
):
    w = world
    county_admin = w.sup.county_admin
    items = [
        {"indicator": "NCM-01", "numerator": 1, "denominator": 1, "verdict": "人财物统一管理已落实"},
        {"indicator": "NCM-02", "numerator": 0, "denominator": 1, "verdict": "未建立党委会议事规则"},
    ]
    bad = _report(
        tree_client,
        county_admin,
        w.sup.county_id,
        "2025",
        [items[0] | {"numerator": 2}, {"indicator": "NCM-03", "numerator": 1, "denominator": 1}],
    )
    assert bad.status_code == 422
    assert {e["field"] for e in bad.get_json()["error"]["errors"]} >= {"items.0.numerator", "items.1.verdict"}

    created = _report(tree_client, county_admin, w.sup.county_id, "2025", items)
    assert created.status_code == 201, created.get_json()
    report = created.get_json()
    assert report["evidence_missing"] == ["NCM-01", "NCM-02"]
    for code in ("NCM-01", "NCM-02"):
        assert _upload(tree_client, county_admin, report["id"], code, f"{code}.pdf", PDF).status_code == 201
    assert tree_client.get(f"{API}/{report['id']}", headers=county_admin.headers).get_json()["evidence_missing"] == []
    approver = report["approval"]["approvers"][0]
    _click(tree_app, sandbox, report, approver, "approval.agree")

    assert tree_client.get(f"{API}/{report['id']}", headers=county_admin.headers).get_json()["state"] == "accepted"
    [met] = _values(tree_app, w.sup.county_id, "NCM-01", "2025")
    [unmet] = _values(tree_app, w.sup.county_id, "NCM-02", "2025")
    assert (float(met.numerator), float(met.denominator), met.verdict) == (1, 1, "人财物统一管理已落实")
    assert (float(unmet.numerator), float(unmet.denominator)) == (0, 1)
    assert float(_rollup(tree_app, w.sup.county_id, "NCM-01", "2025").value) == 100
    assert float(_rollup(tree_app, w.sup.county_id, "NCM-02", "2025").value) == 0

    # Agreed without the evidence a verdict needs: recorded as refused with the reason, nothing counted.
    lacking = _report(tree_client, county_admin, w.sup.county_id, "2024", [items[0]]).get_json()
    _click(tree_app, sandbox, lacking, lacking["approval"]["approvers"][0], "approval.agree")
    done = tree_client.get(f"{API}/{lacking['id']}", headers=county_admin.headers).get_json()
    assert done["state"] == "refused" and "NCM-01" in done["decision_reason"] and "佐证" in done["decision_reason"]
    assert _values(tree_app, w.sup.county_id, "NCM-01", "2024") == []


def test_the_decision_queues_the_roll_up_only_when_its_transaction_commits(tree_app, tree_client, world: ReportWorld):
    from bot.approvals import ApprovalOutcome
    from supervision import reports

    w = world
    report = _report(tree_client, w.sup.clinician, w.institution_id, "2026-Q3", [FULFILMENT]).get_json()
    outcome = ApprovalOutcome(report["approval"]["id"], "k", "agree", {"submission_id": report["id"]}, (), None)
    with tree_app.app_context():
        session = db.session()
        reports.report_decided(outcome)
        assert session.info[reports._PENDING_RECOMPUTE] == {"2026-Q3"}  # waiting for the commit, not queued
        session.rollback()  # the bot's transaction failed: nothing counted, nothing queued
        assert reports._PENDING_RECOMPUTE not in session.info
        assert session.get(IndicatorSubmission, report["id"]).state == "pending"
    assert _values(tree_app, w.institution_id, "FD-FULFILMENT", "2026-Q3") == []
