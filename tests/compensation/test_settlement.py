"""Settlement on both backends: a county of 20 institutions × 12 months × 6 items, inserted as rows (items, two
province tables and a county adjustment, tiers, quantities through a workload batch with exclusions, a superseded
version and per-doctor rows, a budget-driven and two fixed prices, a banding, assessments, line items, fee income
and a gap-variant scheme). The advance and the annual true-up are checked against an independent computation
written here over the same seed data (it does not call the module); a table changed after settlement changes no
settled figure; a refused settlement is corrected into a second revision and approved through the sandbox card,
leaving one approved settlement and the history; 409s, 422s and scope."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from bot import cards as bot_cards
from bot.models import BotCard
from mini_apps.compensation.models import (
    Assessment,
    CoefficientBanding,
    CountyScheme,
    EquivalentTable,
    EquivalentValue,
    FeeIncome,
    InstitutionTier,
    LineItemSubsidy,
    ServiceItem,
    Settlement,
    SettlementLine,
    UnitPrice,
    WorkloadBatch,
    WorkloadExclusion,
    WorkloadQuantity,
)
from org_sync.models import OrgMember, OrgNode
from tests.conftest import run_jobs
from tests.support.auth import bearer, sign_in
from tests.support.sandbox import free_port
from workbench import db

API = "/api/compensation"
YEAR = 2026
MONTHS = [f"{YEAR}-{m:02d}" for m in range(1, 13)]
ITEMS = [  # code, package
    ("OP-VISIT", "basic_medical"),
    ("TCM-VISIT", "basic_medical"),
    ("HOME-VISIT", "basic_medical"),
    ("HTN-FU", "public_health"),
    ("DM-FU", "public_health"),
    ("CONTRACT", "contract"),
]
# (item, tier) → 当量. Table A: January–June, table B: July on; the county adjusts table A.
TABLE_A = {
    ("OP-VISIT", 1): "1.0000",
    ("TCM-VISIT", 1): "1.2000",
    ("HOME-VISIT", 1): "5.0000",
    ("HOME-VISIT", 2): "7.0000",
    ("HOME-VISIT", 3): "9.0000",
    ("HTN-FU", 1): "1.7000",
    ("DM-FU", 1): "2.0000",
    ("CONTRACT", 1): "3.0000",
}
TABLE_B = {
    ("OP-VISIT", 1): "1.0000",
    ("TCM-VISIT", 1): "1.2500",
    ("HOME-VISIT", 1): "5.5000",
    ("HOME-VISIT", 2): "7.5000",
    ("HOME-VISIT", 3): "9.5000",
    ("HTN-FU", 1): "1.8000",
    ("DM-FU", 1): "2.1000",
    ("CONTRACT", 1): "3.2000",
}
COUNTY_A = {("HOME-VISIT", 1): "5.5000", ("DM-FU", 1): "2.2000"}
BUDGET = Decimal("6000000.00")  # basic medical: budget-driven
FIXED = {"public_health": Decimal("28.5000"), "contract": Decimal("35.0000")}
BANDS = [
    {"min": 0, "max": 60, "coefficient": "0.8"},
    {"min": 60, "max": 90, "from": "0.9", "to": "1.0"},
    {"min": 90, "max": 100, "coefficient": "1.05"},
]
SCORES = ["55", "60", "75.5", "89.99", "90", "100", "68.3", "81"]
SHARE = Decimal("0.8")
NO_ASSESSMENT = 5  # the institution (by index) without an assessment until the annual test adds one


def r2(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def r4(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


@dataclass
class Seed:
    """What was inserted, as plain Python: the independent computation reads only this."""

    institutions: list[int]  # index → node id
    tiers: dict[int, int]
    # (institution, month, item) → [(member or None, qty_verified)] current rows
    rows: dict[tuple[int, str, str], list[tuple[int | None, Decimal]]] = field(default_factory=dict)
    excluded: dict[tuple[int, str, str], int] = field(default_factory=dict)
    scores: dict[int, Decimal] = field(default_factory=dict)
    line_items: dict[tuple[int, str], Decimal] = field(default_factory=dict)
    fees: dict[tuple[int, str], Decimal] = field(default_factory=dict)
    county_a: dict[tuple[str, int], str] = field(default_factory=lambda: dict(COUNTY_A))
    table_b: dict[tuple[str, int], str] = field(default_factory=lambda: dict(TABLE_B))


@dataclass
class World:
    pc: object
    seed: Seed
    table_b_id: int


# -- the independent computation --------------------------------------------------------------------------------


def _value(seed: Seed, month: str, item: str, tier: int) -> Decimal:
    merged = dict(TABLE_A) | seed.county_a if month <= f"{YEAR}-06" else dict(seed.table_b)
    return Decimal(merged.get((item, tier)) or merged[(item, 1)])


def _coefficient(score: Decimal) -> Decimal:
    if score < 60:
        return Decimal("0.8000")
    if score < 90:
        return r4(Decimal("0.9") + Decimal("0.1") * (score - 60) / 30)
    return Decimal("1.0500")


def expected(seed: Seed, kind: str, months: list[str], advances: dict[int, Decimal] | None = None) -> dict[int, dict]:
    te: dict[int, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    county: dict[str, Decimal] = defaultdict(Decimal)
    for (institution, month, item), rows in seed.rows.items():
        if month not in months:
            continue
        own = [qty for member, qty in rows if member is None]
        qty_rows = own or [qty for _, qty in rows]
        value = _value(seed, month, item, seed.tiers.get(institution, 1))
        package = dict(ITEMS)[item]
        for qty in qty_rows:
            product = r4(qty * value)
            te[institution][package] += product
            county[package] += product
    prices = dict(FIXED)
    prices["basic_medical"] = r4(BUDGET / ((12 if kind == "advance" else 1) * county["basic_medical"]))
    out = {}
    for institution, packages in te.items():
        score = seed.scores.get(institution)
        k = Decimal(1) if score is None else _coefficient(score)
        purchase = r2(sum(packages[p] * prices[p] for p in packages) * k)
        items = sum((a for (i, m), a in seed.line_items.items() if i == institution and m in months), Decimal(0))
        fee = sum((a for (i, m), a in seed.fees.items() if i == institution and m in months), Decimal(0))
        gap = max(Decimal(0), purchase - fee)
        if kind == "advance":
            payable = r2(gap * SHARE) + items
        else:
            payable = gap + items - (advances or {}).get(institution, Decimal(0))
        out[institution] = {
            "equivalents": {p: v for p, v in packages.items()},
            "price": prices["basic_medical"],
            "coefficient": k,
            "purchase": purchase,
            "line_items": items,
            "fee": fee,
            "gap": gap,
            "payable": payable,
        }
    return out


# -- seeding ------------------------------------------------------------------------------------------------------


def _seed(app, pc) -> tuple[Seed, int]:
    with app.app_context():
        session = db.session()
        county = session.get(OrgNode, pc.county_id)
        existing = session.scalars(
            sa.select(OrgNode).where(OrgNode.id.in_(pc.institution_ids)).order_by(OrgNode.id)
        ).all()
        template = existing[0]
        institutions = [node.id for node in existing][:20]
        for n in range(20 - len(institutions)):
            node = OrgNode(
                corp_id=county.corp_id,
                dept_id=990_000_000 + n,
                parent_id=county.id,
                name=f"测试卫生院{n + 1:02d}",
                level="member_institution",
                layer=template.layer,
                level_source="override",
                level_override="member_institution",
                path="/",
                depth=county.depth + 1,
            )
            session.add(node)
            session.flush()
            node.path = f"{county.path}{node.id}/"
            institutions.append(node.id)
        doctors = session.scalars(sa.select(OrgMember.id).order_by(OrgMember.id).limit(2)).all()
        items = {}
        for code, package in ITEMS:
            items[code] = ServiceItem(
                code=code,
                name=code,
                package=package,
                unit="人次",
                quality_rule={"required_fields": ["sbp"]} if code == "HTN-FU" else {},
                created_by="test",
            )
        session.add_all(items.values())
        session.flush()
        a = EquivalentTable(
            region_node_id=pc.province_id,
            version="2026A",
            name="A",
            valid_from=date(YEAR, 1, 1),
            valid_to=date(YEAR, 6, 30),
            state="published",
            adjust_min_pct=Decimal(-20),
            adjust_max_pct=Decimal(20),
            created_by="test",
        )
        b = EquivalentTable(
            region_node_id=pc.province_id,
            version="2026B",
            name="B",
            valid_from=date(YEAR, 7, 1),
            state="published",
            adjust_min_pct=Decimal(-20),
            adjust_max_pct=Decimal(20),
            created_by="test",
        )
        session.add_all([a, b])
        session.flush()
        adjustment = EquivalentTable(
            region_node_id=county.id,
            base_table_id=a.id,
            version="2026A-C",
            name="A 县调整",
            valid_from=date(YEAR, 1, 1),
            valid_to=date(YEAR, 6, 30),
            state="published",
            created_by="test",
        )
        session.add(adjustment)
        session.flush()
        for table, values in ((a, TABLE_A), (b, TABLE_B), (adjustment, COUNTY_A)):
            session.add_all(
                EquivalentValue(table_id=table.id, item_id=items[code].id, tier=tier, value=Decimal(value))
                for (code, tier), value in values.items()
            )
        tiers = {institutions[i]: (2 if i % 4 == 1 else 3 if i % 4 == 2 else 1) for i in range(20)}
        session.add_all(InstitutionTier(institution_id=i, tier=t, set_by="test") for i, t in tiers.items() if t != 1)
        batch = WorkloadBatch(source="manual", sha256="0" * 64, state="applied", submitted_by="test")
        session.add(batch)
        session.flush()
        seed = Seed(institutions=institutions, tiers=tiers)
        quantities = []
        for n, institution in enumerate(institutions):
            for m, month in enumerate(MONTHS, start=1):
                for j, (code, _) in enumerate(ITEMS):
                    raw = Decimal((n * 7 + m * 3 + j * 11) % 50 + 10) + (Decimal("0.5") if code == "CONTRACT" else 0)
                    excluded = (n + m) % 3 if code == "HTN-FU" else 0
                    verified = raw - excluded
                    key = (institution, month, code)
                    if n == 1 and code == "CONTRACT":  # only per-doctor rows: their sum counts
                        halves = [(doctors[0], r2(verified / 2)), (doctors[1], verified - r2(verified / 2))]
                        seed.rows[key] = halves
                        for member, qty in halves:
                            quantities.append((key, member, qty, qty, 0, True))
                        continue
                    seed.rows[key] = [(None, verified)]
                    quantities.append((key, None, raw, verified, excluded, True))
                    if n == 0 and code == "OP-VISIT":  # a doctor's share as well: not added on top
                        seed.rows[key].append((doctors[0], Decimal(999)))
                        quantities.append((key, doctors[0], Decimal(999), Decimal(999), 0, True))
        rows = []
        for (institution, month, code), member, raw, verified, _, current in quantities:
            rows.append(
                WorkloadQuantity(
                    institution_id=institution,
                    member_id=member,
                    period=month,
                    item_id=items[code].id,
                    qty_raw=raw,
                    qty_verified=verified,
                    batch_id=batch.id,
                    is_current=current,
                )
            )
        # A superseded version of one quantity: never read.
        rows.append(
            WorkloadQuantity(
                institution_id=institutions[2],
                period=MONTHS[0],
                item_id=items["OP-VISIT"].id,
                qty_raw=Decimal(5000),
                qty_verified=Decimal(5000),
                batch_id=batch.id,
                version=0,
                is_current=False,
            )
        )
        session.add_all(rows)
        session.flush()
        exclusions = []
        for row, (key, _, _, _, excluded, _) in zip(rows, quantities, strict=False):
            seed.excluded[key] = excluded
            exclusions += [
                WorkloadExclusion(
                    quantity_id=row.id,
                    record_ref=f"r{row.id}-{u}",
                    units=Decimal(1),
                    rule="required_fields",
                    reason="缺少必填项：sbp",
                )
                for u in range(excluded)
            ]
        session.add_all(exclusions)
        session.add(
            UnitPrice(
                county_id=county.id, package="basic_medical", year=YEAR, method="budget", budget=BUDGET, set_by="t"
            )
        )
        session.add_all(
            UnitPrice(county_id=county.id, package=p, year=YEAR, method="fixed", price=v, set_by="t")
            for p, v in FIXED.items()
        )
        session.add(CoefficientBanding(county_id=county.id, year=YEAR, version=1, bands=BANDS, set_by="t"))
        for n, institution in enumerate(institutions):
            if n == NO_ASSESSMENT:
                continue
            seed.scores[institution] = Decimal(SCORES[n % len(SCORES)])
            session.add(Assessment(institution_id=institution, year=YEAR, score=seed.scores[institution], set_by="t"))
        for n, institution in enumerate(institutions):
            for m, month in enumerate(MONTHS, start=1):
                seed.fees[(institution, month)] = Decimal(12000 + n * 1700) + Decimal("0.35")
                session.add(
                    FeeIncome(
                        institution_id=institution, period=month, amount=seed.fees[(institution, month)], set_by="t"
                    )
                )
                if (n + m) % 5 == 0:
                    seed.line_items[(institution, month)] = Decimal(1000 + n * 10) + Decimal("0.55")
                    session.add(
                        LineItemSubsidy(
                            institution_id=institution,
                            period=month,
                            category="equipment",
                            amount=seed.line_items[(institution, month)],
                            created_by="t",
                        )
                    )
        session.add(CountyScheme(county_id=county.id, year=YEAR, advance_share=SHARE, gap_subsidy=True, set_by="t"))
        session.commit()
        return seed, b.id


@pytest.fixture
def world(tree_app, pc_world) -> World:
    seed, table_b = _seed(tree_app, pc_world)
    return World(pc=pc_world, seed=seed, table_b_id=table_b)


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


def _settle(client, world: World, kind: str, period: str, person=None):
    person = person or world.pc.county_admin
    return client.post(
        f"{API}/counties/{world.pc.county_id}/settlements",
        json={"kind": kind, "period": period},
        headers=person.headers,
    )


def _submit(client, world: World, kind: str, period: str):
    return client.post(
        f"{API}/counties/{world.pc.county_id}/settlements/submit",
        json={"kind": kind, "period": period},
        headers=world.pc.county_admin.headers,
    )


def _click(app, sandbox, submitted: dict, action: str) -> str:
    """The first approver taps 同意/拒绝 on their card in the sandbox; then the callback runs. Their userid."""
    run_jobs(app)  # deliver the cards
    userid = submitted["approvers"][0]
    with app.app_context():
        track = db.session().scalar(
            sa.select(BotCard.out_track_id).where(
                BotCard.out_track_id.like(f"bot-approval:{submitted['approval_id']}:0:%")
            )
        )
    reply = sandbox.admin("POST", f"cards/{track}/click", json={"userid": userid, "action_id": action})
    assert reply.status_code == 200, reply.text
    assert "apply_error" not in reply.json(), reply.json()
    run_jobs(app)  # the approval's callback
    return userid


def _approve(app, client, sandbox, world: World, kind: str, period: str) -> list[dict]:
    assert _settle(client, world, kind, period).status_code == 201
    submitted = _submit(client, world, kind, period)
    assert submitted.status_code == 201, submitted.get_json()
    _click(app, sandbox, submitted.get_json(), "approval.agree")
    return _list(client, world, kind=kind, period=period)


def _list(client, world: World, person=None, **query) -> list[dict]:
    person = person or world.pc.county_admin
    reply = client.get(f"{API}/counties/{world.pc.county_id}/settlements", query_string=query, headers=person.headers)
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()["items"]


def _check(items: list[dict], want: dict[int, dict]) -> None:
    assert {s["institution_id"] for s in items} == set(want)
    for s in items:
        w = want[s["institution_id"]]
        assert {p: Decimal(v) for p, v in s["equivalents"].items()} == w["equivalents"], s["institution_id"]
        assert Decimal(s["prices"]["basic_medical"]) == w["price"]
        assert Decimal(s["prices"].get("public_health", FIXED["public_health"])) == FIXED["public_health"]
        assert Decimal(s["coefficient"]) == w["coefficient"]
        assert Decimal(s["purchase_amount"]) == w["purchase"]
        assert Decimal(s["line_item_amount"]) == w["line_items"]
        assert Decimal(s["fee_income"]) == w["fee"]
        assert Decimal(s["gap_subsidy"]) == w["gap"]
        assert Decimal(s["payable"]) == w["payable"], s["institution_id"]


# -- figures --------------------------------------------------------------------------------------------------------


def test_an_advance_matches_the_independent_computation(tree_app, tree_client, world: World):
    reply = _settle(tree_client, world, "advance", "2026-03")
    assert reply.status_code == 201, reply.get_json()
    items = reply.get_json()["items"]
    assert len(items) == 20 and {s["state"] for s in items} == {"draft"} and {s["revision"] for s in items} == {1}
    want = expected(world.seed, "advance", ["2026-03"])
    _check(items, want)
    # The gap variant pays some institutions nothing beyond their line items, others a positive gap.
    assert any(w["gap"] == 0 for w in want.values()) and any(w["gap"] > 0 for w in want.values())
    # No assessment yet: K = 1 on the advance, said so.
    lonely = next(s for s in items if s["institution_id"] == world.seed.institutions[NO_ASSESSMENT])
    detail = tree_client.get(f"{API}/settlements/{lonely['id']}", headers=world.pc.county_admin.headers).get_json()
    assert detail["coefficient"] == "1.0000" and "系数 1" in detail["computation"]["coefficient"]
    assert detail["snapshot"]["assessment"] is None
    # Lines: the doctor-only institution counts its doctors' sum; the other ignores its doctor's row.
    first = next(s for s in items if s["institution_id"] == world.seed.institutions[0])
    lines = {
        line["item_code"]: line
        for line in tree_client.get(
            f"{API}/settlements/{first['id']}", headers=world.pc.county_admin.headers
        ).get_json()["lines"]
    }
    assert (
        Decimal(lines["OP-VISIT"]["quantity"])
        == world.seed.rows[(world.seed.institutions[0], "2026-03", "OP-VISIT")][0][1]
    )
    assert len(lines) == 6 and len(lines["OP-VISIT"]["quantity_ids"]) == 1


def test_the_annual_true_up_subtracts_approved_advances_and_matches(
    tree_app, tree_client, sandbox, world: World, served
):
    advances: dict[int, Decimal] = defaultdict(Decimal)
    for month in ("2026-01", "2026-02"):
        approved = _approve(tree_app, tree_client, sandbox, world, "advance", month)
        _check(approved, expected(world.seed, "advance", [month]))
        for s in approved:
            assert s["state"] == "approved"
            advances[s["institution_id"]] += Decimal(s["payable"])
    # Annual without an assessment for every institution: refused, nothing stored.
    reply = _settle(tree_client, world, "annual", "2026")
    assert reply.status_code == 409 and reply.get_json()["error"]["field"] == "assessment"
    lonely = world.seed.institutions[NO_ASSESSMENT]
    with tree_app.app_context():
        session = db.session()
        session.add(Assessment(institution_id=lonely, year=YEAR, score=Decimal("95"), set_by="t"))
        session.commit()
    world.seed.scores[lonely] = Decimal("95")
    reply = _settle(tree_client, world, "annual", "2026")
    assert reply.status_code == 201, reply.get_json()
    items = reply.get_json()["items"]
    want = expected(world.seed, "annual", MONTHS, advances)
    _check(items, want)
    for s in items:
        assert Decimal(s["advances_paid"]) == advances[s["institution_id"]]
    # The year's TE is the sum of the months', each month with its own table (A + adjustment, then B).
    monthly = [expected(world.seed, "advance", [m]) for m in MONTHS]
    some = world.seed.institutions[2]
    assert want[some]["equivalents"]["basic_medical"] == sum(m[some]["equivalents"]["basic_medical"] for m in monthly)
    detail = tree_client.get(f"{API}/settlements/{items[0]['id']}", headers=world.pc.county_admin.headers).get_json()
    snap = detail["snapshot"]
    assert len(snap["quantities"]) >= 72 and len(snap["tables"]) == 12 and snap["banding"]["bands"] == BANDS
    assert [a["period"] for a in snap["advances"]] == ["2026-01", "2026-02"]
    assert (
        snap["tables"]["2026-03"]["county_table_id"] is not None
        and snap["tables"]["2026-09"]["county_table_id"] is None
    )


def test_a_table_change_after_settlement_changes_no_settled_figure(
    tree_app, tree_client, sandbox, world: World, served
):
    reply = _settle(tree_client, world, "advance", "2026-08")
    assert reply.status_code == 201
    before = {s["id"]: s for s in reply.get_json()["items"]}
    details = {
        i: tree_client.get(f"{API}/settlements/{i}", headers=world.pc.county_admin.headers).get_json() for i in before
    }
    with tree_app.app_context():
        session = db.session()
        # Change a value of the table the settlement read, and publish a county adjustment of it.
        op = session.scalar(sa.select(ServiceItem.id).where(ServiceItem.code == "HOME-VISIT"))
        value = session.scalar(
            sa.select(EquivalentValue).where(
                EquivalentValue.table_id == world.table_b_id, EquivalentValue.item_id == op, EquivalentValue.tier == 1
            )
        )
        value.value = Decimal("6.0000")
        adjustment = EquivalentTable(
            region_node_id=world.pc.county_id,
            base_table_id=world.table_b_id,
            version="2026B-C",
            name="B 县调整",
            valid_from=date(YEAR, 7, 1),
            state="published",
            created_by="t",
        )
        session.add(adjustment)
        session.flush()
        dm = session.scalar(sa.select(ServiceItem.id).where(ServiceItem.code == "DM-FU"))
        session.add(EquivalentValue(table_id=adjustment.id, item_id=dm, tier=1, value=Decimal("2.4000")))
        session.commit()
    world.seed.table_b[("HOME-VISIT", 1)] = "6.0000"
    world.seed.table_b[("DM-FU", 1)] = "2.4000"
    after = {s["id"]: s for s in _list(tree_client, world, kind="advance", period="2026-08")}
    assert after == before
    for i, detail in details.items():
        assert tree_client.get(f"{API}/settlements/{i}", headers=world.pc.county_admin.headers).get_json() == detail
    # A new revision (after a refusal) reads the new tables and differs.
    submitted = _submit(tree_client, world, "advance", "2026-08").get_json()
    _click(tree_app, sandbox, submitted, "approval.refuse")
    reply = _settle(tree_client, world, "advance", "2026-08")
    assert reply.status_code == 201
    revised = {s["institution_id"]: s for s in reply.get_json()["items"]}
    _check(list(revised.values()), expected(world.seed, "advance", ["2026-08"]))
    old = {s["institution_id"]: s for s in before.values()}
    tier1 = world.seed.institutions[0]
    assert revised[tier1]["revision"] == 2
    assert revised[tier1]["equivalents"]["basic_medical"] != old[tier1]["equivalents"]["basic_medical"]
    assert revised[tier1]["purchase_amount"] != old[tier1]["purchase_amount"]


# -- approval -----------------------------------------------------------------------------------------------------


def test_refused_corrected_and_approved_ends_with_one_approved_settlement_and_the_history(
    tree_app, tree_client, sandbox, world: World, served
):
    assert _settle(tree_client, world, "advance", "2026-05").status_code == 201
    again = _settle(tree_client, world, "advance", "2026-05")
    assert again.status_code == 409  # a draft is open
    submitted = _submit(tree_client, world, "advance", "2026-05")
    assert submitted.status_code == 201, submitted.get_json()
    body = submitted.get_json()
    assert world.pc.county_admin.userid not in body["approvers"] or len(body["approvers"]) == 1
    assert {s["state"] for s in body["items"]} == {"submitted"}
    assert _settle(tree_client, world, "advance", "2026-05").status_code == 409  # submitted is open too
    refuser = _click(tree_app, sandbox, body, "approval.refuse")
    refused = _list(tree_client, world, kind="advance", period="2026-05")
    assert {s["state"] for s in refused} == {"refused"}
    assert all(refuser in s["reason"] and s["decided_by"] == refuser and s["decided_at"] for s in refused)
    with tree_app.app_context():
        refuser_name = db.session().scalar(sa.select(OrgMember.name).where(OrgMember.userid == refuser))
    assert {s["decided_by_name"] for s in refused} == {refuser_name}
    assert _submit(tree_client, world, "advance", "2026-05").status_code == 409  # nothing to submit
    # Corrected: revision 2 (the refused one superseded), submitted and approved.
    approved = _approve(tree_app, tree_client, sandbox, world, "advance", "2026-05")
    by_institution = defaultdict(list)
    for s in approved:
        by_institution[s["institution_id"]].append(s)
    assert len(by_institution) == 20
    for history in by_institution.values():
        assert [(s["revision"], s["state"]) for s in history] == [(1, "superseded"), (2, "approved")]
        assert history[0]["reason"] and history[1]["reason"] is None and history[1]["decided_by"]
        assert history[1]["submitted_at"] and history[1]["created_by"]
    with tree_app.app_context():
        count = db.session().scalar(
            sa.select(sa.func.count())
            .select_from(Settlement)
            .where(Settlement.period == "2026-05", Settlement.state == "approved")
        )
    assert count == 20
    reply = _settle(tree_client, world, "advance", "2026-05")
    assert reply.status_code == 409 and "审定" in reply.get_json()["error"]["message"]


# -- bad input and scope ------------------------------------------------------------------------------------------


def _stored(app) -> tuple[int, int]:
    with app.app_context():
        session = db.session()
        return (
            session.scalar(sa.select(sa.func.count()).select_from(Settlement)),
            session.scalar(sa.select(sa.func.count()).select_from(SettlementLine)),
        )


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"kind": "weekly", "period": "2026-03"}, 422, "kind"),
        ({"kind": "advance", "period": "2026-13"}, 422, "period"),
        ({"kind": "annual", "period": "2026-03"}, 422, "period"),
        ({"kind": "advance", "period": "2025-03"}, 409, "period"),  # no workload that month
        ({"kind": "advance"}, 422, "period"),
    ],
)
def test_bad_input_stores_nothing(tree_app, tree_client, world: World, body, status, field):
    reply = tree_client.post(
        f"{API}/counties/{world.pc.county_id}/settlements", json=body, headers=world.pc.county_admin.headers
    )
    assert reply.status_code == status, reply.get_json()
    error = reply.get_json()["error"]
    assert field in (error.get("field") or "") + str(error.get("details", "")) + str(reply.get_json())
    assert _stored(tree_app) == (0, 0)


def test_a_missing_price_is_a_conflict_and_stores_nothing(tree_app, tree_client, world: World):
    with tree_app.app_context():
        session = db.session()
        session.execute(sa.delete(UnitPrice).where(UnitPrice.package == "contract"))
        session.commit()
    reply = _settle(tree_client, world, "advance", "2026-03")
    assert reply.status_code == 409 and reply.get_json()["error"]["field"] == "package"
    assert _stored(tree_app) == (0, 0)


def test_reads_and_writes_are_scoped_and_lines_drill_to_excluded_units(tree_app, tree_client, sandbox, world: World):
    assert _settle(tree_client, world, "advance", "2026-03").status_code == 201
    pc = world.pc
    assert len(_list(tree_client, world, person=pc.province_admin)) == 20
    other = tree_client.get(f"{API}/counties/{pc.county_id}/settlements", headers=pc.other_county_admin.headers)
    assert other.status_code == 404
    assert (
        tree_client.get(f"{API}/counties/{pc.county_id}/settlements", headers=pc.clinician.headers).status_code == 403
    )
    assert _settle(tree_client, world, "advance", "2026-04", person=pc.other_county_admin).status_code == 404
    # An institution administrator sees their institution's settlements only, and cannot settle.
    own = world.seed.institutions[-1]
    granted = tree_client.post(
        "/api/auth/grants",
        json={"userid": pc.clinician.userid, "role": "institution_admin", "node_id": own},
        headers=pc.county_admin.headers,
    )
    assert granted.status_code == 201, granted.get_json()
    headers = bearer(sign_in(tree_client, sandbox, pc.clinician.userid))
    mine = tree_client.get(f"{API}/counties/{pc.county_id}/settlements", headers=headers).get_json()["items"]
    assert [s["institution_id"] for s in mine] == [own]
    others = [s for s in _list(tree_client, world) if s["institution_id"] != own]
    assert tree_client.get(f"{API}/settlements/{others[0]['id']}", headers=headers).status_code == 404
    assert (
        tree_client.get(f"{API}/settlements/{others[0]['id']}", headers=pc.other_county_admin.headers).status_code
        == 404
    )
    reply = tree_client.post(
        f"{API}/counties/{pc.county_id}/settlements", json={"kind": "advance", "period": "2026-04"}, headers=headers
    )
    assert reply.status_code == 403
    # Drill: amount → lines → the excluded units behind the HTN-FU line.
    detail = tree_client.get(f"{API}/settlements/{mine[0]['id']}", headers=headers).get_json()
    htn = next(line for line in detail["lines"] if line["item_code"] == "HTN-FU")
    units = world.seed.excluded[(own, "2026-03", "HTN-FU")]
    assert Decimal(htn["excluded"]) == units
    drill = tree_client.get(f"{API}/settlements/{mine[0]['id']}/lines/HTN-FU/exclusions", headers=headers)
    assert drill.status_code == 200, drill.get_json()
    assert drill.get_json()["total"] == units
    assert all(row["reason"] == "缺少必填项：sbp" and row["period"] == "2026-03" for row in drill.get_json()["items"])
    assert (
        tree_client.get(f"{API}/settlements/{mine[0]['id']}/lines/NOPE/exclusions", headers=headers).status_code == 404
    )


def test_a_year_is_settled_in_order(tree_app, tree_client, world: World):
    """The true-up waits for the year's advances (it subtracts the approved ones: one still open would be paid
    twice), and no advance of a year is settled once its true-up exists."""
    with tree_app.app_context():
        session = db.session()
        session.add(Assessment(institution_id=world.seed.institutions[NO_ASSESSMENT], year=YEAR, score=70, set_by="t"))
        session.commit()
    drafts = _settle(tree_client, world, "advance", "2026-03")  # drafts: still open
    assert drafts.status_code == 201
    assert {s["created_by_name"] for s in drafts.get_json()["items"]} == {world.pc.county_admin.name}
    before = _stored(tree_app)
    reply = _settle(tree_client, world, "annual", "2026")
    assert reply.status_code == 409, reply.get_json()
    assert reply.get_json()["error"]["field"] == "period" and "2026-03" in reply.get_json()["error"]["message"]
    assert _stored(tree_app) == before
    with tree_app.app_context():
        session = db.session()
        session.execute(sa.update(Settlement).values(state="approved"))
        session.commit()
    assert _settle(tree_client, world, "annual", "2026").status_code == 201
    before = _stored(tree_app)
    reply = _settle(tree_client, world, "advance", "2026-04")
    assert reply.status_code == 409 and "年度清算" in reply.get_json()["error"]["message"]
    assert _stored(tree_app) == before
