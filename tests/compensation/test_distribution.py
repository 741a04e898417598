"""Internal distribution (二次分配) on both backends, on the settlement tests' county: an institution administrator
sets the rule, distributes an approved advance among the staff by personal 当量 × point value × personal
coefficient (checked against a computation written here from the seed's 当量 values, not the module's), redoes a
draft, confirms it (each person told their own share), and the staff read only their own shares. Plus the
allocation itself by hand and by property, the annual basis, bad rules (422 naming the field, nothing stored),
409s and scope."""

from __future__ import annotations

import itertools
from decimal import ROUND_DOWN, Decimal

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.models import OutboxMessage
from mini_apps.compensation import distribution
from mini_apps.compensation.models import (
    Distribution,
    DistributionRule,
    ServiceItem,
    Settlement,
    WorkloadBatch,
    WorkloadQuantity,
)
from org_sync.models import OrgMember, OrgMembership, OrgNode
from tests.compensation.test_settlement import SHARE, World, _settle, _value, r2, r4
from tests.support.auth import bearer, sign_in
from workbench import db
from workbench.auth.principal import load_principal

API = "/api/compensation"
MONTH = "2026-03"
CENT = Decimal("0.01")


# -- the allocation, by hand and by property ----------------------------------------------------------------------


def test_allocation_by_hand():
    points = {1: Decimal(1), 2: Decimal(2), 3: Decimal(3), 4: Decimal(0)}
    # Pool 1000, 20% equal among 4 (50 each), 800 by points 1:2:3:0 → 133.33…, 266.66…, 400.
    got = distribution.allocate(Decimal(1000), points, Decimal("0.2"), None)
    assert got.equal == Decimal(50) and got.point_value == Decimal(800) / 6 and not got.capped
    assert got.amounts == {1: Decimal("183.33"), 2: Decimal("316.67"), 3: Decimal("450.00"), 4: Decimal("50.00")}
    assert got.how(2, points[2]) == "50.0000 + 2 × 133.33333333 = 316.6667 → 316.67"
    # A cap of 1.5 × the mean (375): member 3 is held there; 475 beyond the equal parts goes to 1 and 2 by points.
    got = distribution.allocate(Decimal(1000), points, Decimal("0.2"), Decimal("1.5"))
    assert got.capped == {3} and got.amounts[3] == Decimal("375.00") and got.amounts[4] == Decimal("50.00")
    assert got.amounts[1] + got.amounts[2] == Decimal("575.00") and got.point_value == Decimal(475) / 3
    assert got.how(3, points[3]) == "封顶金额 375.0000 → 375.00"
    # Nobody uncapped with points: what is left goes to them equally, and their `how` says so.
    got = distribution.allocate(Decimal(100), {1: Decimal(5), 2: Decimal(0), 3: Decimal(0)}, Decimal(0), Decimal(1))
    assert got.capped == {1} and got.amounts == {1: Decimal("33.33"), 2: Decimal("33.34"), 3: Decimal("33.33")}
    assert got.how(2, Decimal(0)) == "0.0000 + 0 × 0.00000000 + 33.3333 = 33.3333 → 33.34"


@settings(max_examples=200, deadline=None)
@given(
    pool=st.decimals(min_value=Decimal("0.01"), max_value=Decimal(10**8), places=2),
    points=st.lists(st.decimals(min_value=0, max_value=Decimal(10**6), places=4), min_size=1, max_size=40),
    average=st.decimals(min_value=0, max_value=1, places=4),
    cap=st.none() | st.decimals(min_value=1, max_value=5, places=2),
)
def test_allocation_adds_up_to_the_pool_and_respects_the_rule(pool, points, average, cap):
    by_member = dict(enumerate(points, start=1))
    got = distribution.allocate(pool, by_member, average, cap)
    amounts, capped, equal = got.amounts, got.capped, got.equal
    assert sum(amounts.values()) == pool  # to the cent
    assert all(a >= 0 for a in amounts.values())
    if cap is not None:
        limit = (pool / len(points) * cap).quantize(CENT, rounding=ROUND_DOWN) + CENT
        assert all(a <= limit for a in amounts.values())
    free = sorted((by_member[m], amounts[m]) for m in amounts if m not in capped)
    if any(p for p, _ in free):  # among the uncapped, more points never get less (within the cent handed out)
        assert all(b[1] + CENT >= a[1] for a, b in itertools.pairwise(free))
        assert all(a >= equal.quantize(CENT, rounding=ROUND_DOWN) for _, a in free)


# -- the county ---------------------------------------------------------------------------------------------------


def _staff(app, pc) -> tuple[int, list[tuple[int, str]]]:
    """The clinician's institution and three active members working there (the clinician first)."""
    with app.app_context():
        session = db.session()
        clinician = session.scalar(sa.select(OrgMember.id).where(OrgMember.userid == pc.clinician.userid))
        clinic = load_principal(session, clinician).institution_ids()[0]
        node = session.get(OrgNode, clinic)
        others = session.execute(
            sa.select(OrgMember.id, OrgMember.userid)
            .join(OrgMembership, OrgMembership.member_id == OrgMember.id)
            .join(OrgNode, OrgNode.id == OrgMembership.node_id)
            .where(OrgNode.path.startswith(node.path), OrgMember.active.is_(True), OrgMember.id != clinician)
            .distinct()
            .order_by(OrgMember.id)
            .limit(2)
        ).all()
        assert clinic in pc.institution_ids and len(others) == 2
        return clinic, [(clinician, pc.clinician.userid), *[(m, u) for m, u in others]]


PERSONAL = {0: {"OP-VISIT": Decimal(40), "HTN-FU": Decimal("10.5")}, 1: {"OP-VISIT": Decimal(20)}}  # by staff index


def _doctor_rows(app, clinic: int, staff: list[tuple[int, str]], rows: dict[int, dict[str, Decimal]], month: str):
    with app.app_context():
        session = db.session()
        items = dict(session.execute(sa.select(ServiceItem.code, ServiceItem.id)).all())
        batch = WorkloadBatch(source="manual", sha256="1" * 64, state="applied", submitted_by="test")
        session.add(batch)
        session.flush()
        for index, by_item in rows.items():
            for code, qty in by_item.items():
                if code not in items:
                    session.add(ServiceItem(code=code, name=code, package="basic_medical", unit="次", created_by="t"))
                    session.flush()
                    items = dict(session.execute(sa.select(ServiceItem.code, ServiceItem.id)).all())
                session.add(
                    WorkloadQuantity(
                        institution_id=clinic,
                        member_id=staff[index][0],
                        period=month,
                        item_id=items[code],
                        qty_raw=qty,
                        qty_verified=qty,
                        batch_id=batch.id,
                    )
                )
        session.commit()


def _approved_advance(app, client, world: World, clinic: int) -> dict:
    reply = _settle(client, world, "advance", MONTH)
    assert reply.status_code == 201, reply.get_json()
    mine = next(s for s in reply.get_json()["items"] if s["institution_id"] == clinic)
    with app.app_context():  # the approval itself is tested with the settlement; here it is the starting point
        session = db.session()
        session.get(Settlement, mine["id"]).state = "approved"
        session.commit()
    return mine


def _admin_of(client, sandbox, pc, clinic: int) -> dict[str, str]:
    granted = client.post(
        "/api/auth/grants",
        json={"userid": pc.clinician.userid, "role": "institution_admin", "node_id": clinic},
        headers=pc.county_admin.headers,
    )
    assert granted.status_code == 201, granted.get_json()
    return bearer(sign_in(client, sandbox, pc.clinician.userid))


def _rule(staff: list[tuple[int, str]], **over) -> dict:
    return {
        "pool_share": "0.6",
        "average_share": "0.2",
        "coefficient_min": "0.8",
        "coefficient_max": "1.5",
        "coefficients": [
            {"member_id": staff[1][0], "coefficient": "1.2", "note": "科室负责人"},
            {"member_id": staff[2][0], "coefficient": "0.9"},
        ],
        **over,
    }


def test_a_distribution_matches_the_independent_computation_and_is_confirmed_once(
    tree_app, tree_client, sandbox, world: World
):
    clinic, staff = _staff(tree_app, world.pc)
    _doctor_rows(tree_app, clinic, staff, PERSONAL, MONTH)
    settled = _approved_advance(tree_app, tree_client, world, clinic)
    admin = _admin_of(tree_client, sandbox, world.pc, clinic)
    rule = tree_client.put(f"{API}/institutions/{clinic}/distribution-rules", json=_rule(staff), headers=admin)
    assert rule.status_code == 200, rule.get_json()
    assert rule.get_json()["version"] == 1

    # A late per-doctor row of an item the settlement did not pay: counts for nothing, listed.
    _doctor_rows(tree_app, clinic, staff, {1: {"LATE-ITEM": Decimal(7)}}, MONTH)
    reply = tree_client.post(f"{API}/settlements/{settled['id']}/distributions", headers=admin)
    assert reply.status_code == 201, reply.get_json()
    got = reply.get_json()

    # Independently: basis, pool, personal 当量 from the seed's tables, points, the equal part, the point value.
    tier = world.seed.tiers.get(clinic, 1)
    basis = r2(Decimal(settled["purchase_amount"]) * SHARE)  # the services' value, not the gap (gap variant)
    pool = r2(basis * Decimal("0.6"))
    te = {
        i: sum((r4(q * _value(world.seed, MONTH, code, tier)) for code, q in PERSONAL.get(i, {}).items()), Decimal(0))
        for i in range(3)
    }
    coefficient = {0: Decimal(1), 1: Decimal("1.2"), 2: Decimal("0.9")}
    points = {i: r4(te[i] * coefficient[i]) for i in range(3)}
    equal = pool * Decimal("0.2") / 3
    value = (pool - equal * 3) / sum(points.values())
    exact = {i: equal + points[i] * value for i in range(3)}
    assert Decimal(got["basis"]) == basis and Decimal(got["pool"]) == pool
    shares = {s["member_id"]: s for s in got["shares"]}
    assert set(shares) == {m for m, _ in staff}
    for i, (member, _) in enumerate(staff):
        assert Decimal(shares[member]["equivalents"]) == te[i]
        assert Decimal(shares[member]["points"]) == points[i]
        assert abs(Decimal(shares[member]["amount"]) - exact[i]) < CENT
    assert sum(Decimal(s["amount"]) for s in got["shares"]) == pool
    assert [row[3] for row in got["snapshot"]["unsettled"]] == ["LATE-ITEM"]
    # What was read is frozen: each doctor's rows and the 当量 of each month and item they were valued at.
    frozen = got["snapshot"]
    assert {int(m) for m in frozen["rows"]} == {staff[0][0], staff[1][0]}
    assert frozen["values"][f"{MONTH} OP-VISIT"] == format(_value(world.seed, MONTH, "OP-VISIT", tier), "f")
    assert all(share["how"].endswith(f"→ {share['amount']}") for share in got["shares"])
    assert got["state"] == "draft" and got["revision"] == 1 and got["created_by_name"] == world.pc.clinician.name

    # Redone after a rule change: the first draft is superseded; then confirmed once, each person told.
    tree_client.put(
        f"{API}/institutions/{clinic}/distribution-rules", json=_rule(staff, average_share="0"), headers=admin
    )
    again = tree_client.post(f"{API}/settlements/{settled['id']}/distributions", headers=admin).get_json()
    assert again["revision"] == 2 and Decimal(again["average_amount"]) == 0
    assert sum(Decimal(s["amount"]) for s in again["shares"]) == pool
    history = tree_client.get(f"{API}/institutions/{clinic}/distributions", headers=admin).get_json()["items"]
    assert [(d["revision"], d["state"]) for d in history] == [(1, "superseded"), (2, "draft")]
    for bad in ("%00", "2026-13", "x"):  # a period filter that is not one is named, not a 500
        reply = tree_client.get(f"{API}/institutions/{clinic}/distributions?period={bad}", headers=admin)
        assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "period"
        reply = tree_client.get(f"{API}/counties/{world.pc.county_id}/settlements?period={bad}", headers=admin)
        assert reply.status_code == 422
    assert tree_client.post(f"{API}/distributions/{got['id']}/confirm", headers=admin).status_code == 409
    confirmed = tree_client.post(f"{API}/distributions/{again['id']}/confirm", headers=admin)
    assert confirmed.status_code == 200, confirmed.get_json()
    assert confirmed.get_json()["state"] == "confirmed"
    with tree_app.app_context():
        notices = (
            db.session()
            .scalars(sa.select(OutboxMessage).where(OutboxMessage.idempotency_key.like(f"comp:share:{again['id']}:%")))
            .all()
        )
    assert sorted(u for n in notices for u in n.recipients) == sorted(u for _, u in staff)
    assert tree_client.post(f"{API}/distributions/{again['id']}/confirm", headers=admin).status_code == 409
    reply = tree_client.post(f"{API}/settlements/{settled['id']}/distributions", headers=admin)
    assert reply.status_code == 409 and reply.get_json()["error"]["field"] == "settlement_id"

    # Each person reads their own share only; the county reads the whole distribution; another county nothing.
    member_headers = bearer(sign_in(tree_client, sandbox, staff[1][1]))
    own = tree_client.get(f"{API}/my-shares", headers=member_headers).get_json()["items"]
    assert [(s["member_id"], s["distribution_id"]) for s in own] == [(staff[1][0], again["id"])]
    assert own[0]["amount"] == next(s["amount"] for s in again["shares"] if s["member_id"] == staff[1][0])
    assert tree_client.get(f"{API}/distributions/{again['id']}", headers=member_headers).status_code == 404
    county = tree_client.get(f"{API}/distributions/{again['id']}", headers=world.pc.county_admin.headers)
    assert county.status_code == 200 and len(county.get_json()["shares"]) == 3
    other = tree_client.get(f"{API}/distributions/{again['id']}", headers=world.pc.other_county_admin.headers)
    assert other.status_code == 404


def test_only_the_institution_distributes_an_approved_settlement_by_its_rule(
    tree_app, tree_client, sandbox, world: World
):
    clinic, staff = _staff(tree_app, world.pc)
    _doctor_rows(tree_app, clinic, staff, PERSONAL, MONTH)
    reply = _settle(tree_client, world, "advance", MONTH)
    draft = next(s for s in reply.get_json()["items"] if s["institution_id"] == clinic)
    admin = _admin_of(tree_client, sandbox, world.pc, clinic)
    # A draft settlement is not final; an approved one needs the institution's rule first.
    reply = tree_client.post(f"{API}/settlements/{draft['id']}/distributions", headers=admin)
    assert reply.status_code == 409 and reply.get_json()["error"]["field"] == "settlement_id"
    with tree_app.app_context():
        session = db.session()
        session.get(Settlement, draft["id"]).state = "approved"
        session.commit()
    reply = tree_client.post(f"{API}/settlements/{draft['id']}/distributions", headers=admin)
    assert reply.status_code == 409 and reply.get_json()["error"]["field"] == "rule"
    put = tree_client.put(f"{API}/institutions/{clinic}/distribution-rules", json=_rule(staff), headers=admin)
    assert put.status_code == 200
    # The county's administrators do not divide an institution's pool, nor set its rule.
    county = tree_client.post(f"{API}/settlements/{draft['id']}/distributions", headers=world.pc.county_admin.headers)
    assert county.status_code == 403
    rule_put = tree_client.put(
        f"{API}/institutions/{clinic}/distribution-rules", json=_rule(staff), headers=world.pc.county_admin.headers
    )
    assert rule_put.status_code == 403
    other = next(i for i in world.seed.institutions if i != clinic)
    assert (
        tree_client.put(f"{API}/institutions/{other}/distribution-rules", json=_rule(staff), headers=admin).status_code
        == 404
    )
    assert tree_client.post(f"{API}/settlements/{draft['id']}/distributions", headers=admin).status_code == 201


def test_a_lead_hospital_does_not_divide_its_member_institutions_pools(tree_app, tree_client, sandbox, pc_world):
    """A member institution below a lead hospital is its own institution: the lead's administrators neither set
    its rule nor count its staff (the nearest-institution rule of workload intake)."""
    clinic, staff = _staff(tree_app, pc_world)
    with tree_app.app_context():
        session = db.session()
        node = session.get(OrgNode, clinic)
        lead = session.scalar(
            sa.select(OrgNode.id).where(
                OrgNode.id.in_([int(part) for part in node.path.strip("/").split("/")[:-1]]),
                OrgNode.level.in_(("medical_community_lead", "member_institution")),
            )
        )
    assert lead is not None, "the sandbox's member institutions sit under their lead hospital"
    admin = _admin_of(tree_client, sandbox, pc_world, lead)
    reply = tree_client.put(f"{API}/institutions/{clinic}/distribution-rules", json=_rule(staff), headers=admin)
    assert reply.status_code == 404
    reply = tree_client.put(f"{API}/institutions/{lead}/distribution-rules", json=_rule(staff), headers=admin)
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "coefficients.0.member_id"
    # The people a rule may name: the lead's own, not the clinic's; the clinic's include its three.
    lead_staff = tree_client.get(f"{API}/institutions/{lead}/staff", headers=admin).get_json()["items"]
    clinic_staff = tree_client.get(f"{API}/institutions/{clinic}/staff", headers=admin).get_json()["items"]
    assert not {m for m, _ in staff} & {row["member_id"] for row in lead_staff}
    assert {m for m, _ in staff} <= {row["member_id"] for row in clinic_staff}
    assert all(row["name"] for row in clinic_staff)
    other = tree_client.get(f"{API}/institutions/{clinic}/staff", headers=pc_world.other_county_admin.headers)
    assert other.status_code == 404


def test_packages_and_the_cap_shape_the_shares(tree_app, tree_client, sandbox, world: World):
    clinic, staff = _staff(tree_app, world.pc)
    _doctor_rows(tree_app, clinic, staff, PERSONAL, MONTH)
    settled = _approved_advance(tree_app, tree_client, world, clinic)
    admin = _admin_of(tree_client, sandbox, world.pc, clinic)
    # Only public health counts: staff 1 (visits only) has no 当量 but is named, so gets the equal part only.
    body = _rule(staff, packages=["public_health"], average_share="0.1", coefficients=[])
    body["coefficients"] = [{"member_id": staff[1][0], "coefficient": "1"}]
    assert (
        tree_client.put(f"{API}/institutions/{clinic}/distribution-rules", json=body, headers=admin).status_code == 200
    )
    got = tree_client.post(f"{API}/settlements/{settled['id']}/distributions", headers=admin).get_json()
    shares = {s["member_id"]: s for s in got["shares"]}
    assert set(shares) == {staff[0][0], staff[1][0]}  # staff 2: neither 当量 nor named
    tier = world.seed.tiers.get(clinic, 1)
    assert Decimal(shares[staff[0][0]]["equivalents"]) == r4(
        Decimal("10.5") * _value(world.seed, MONTH, "HTN-FU", tier)
    )
    assert Decimal(shares[staff[1][0]]["equivalents"]) == 0
    pool = Decimal(got["pool"])
    assert Decimal(shares[staff[1][0]]["amount"]) == r2(pool * Decimal("0.1") / 2)
    # A cap of 1 × the mean: everyone gets the mean, to the cent.
    body["cap_multiple"] = "1"
    assert (
        tree_client.put(f"{API}/institutions/{clinic}/distribution-rules", json=body, headers=admin).status_code == 200
    )
    got = tree_client.post(f"{API}/settlements/{settled['id']}/distributions", headers=admin).get_json()
    amounts = sorted(Decimal(s["amount"]) for s in got["shares"])
    assert sum(amounts) == pool and amounts[-1] - amounts[0] <= CENT
    assert any(s["capped"] and s["how"].startswith("封顶金额") for s in got["shares"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"pool_share": "0"}, "pool_share"),
        ({"pool_share": "1.5"}, "pool_share"),
        ({"average_share": "0.12345"}, "average_share"),
        ({"coefficient_max": "0.7"}, "coefficient_max"),
        ({"default_coefficient": "2"}, "default_coefficient"),
        ({"coefficients": [{"member_id": "STAFF1", "coefficient": "1.6"}]}, "coefficients.0.coefficient"),
        (
            {
                "coefficients": [
                    {"member_id": "STAFF1", "coefficient": "1"},
                    {"member_id": "STAFF1", "coefficient": "1"},
                ]
            },
            "coefficients.1.member_id",
        ),
        ({"coefficients": [{"member_id": "OUTSIDER", "coefficient": "1"}]}, "coefficients.0.member_id"),
        ({"coefficients": [{"member_id": -3, "coefficient": "1"}]}, "coefficients.0.member_id"),
        ({"coefficients": [{"member_id": "STAFF1", "coefficient": "1", "bonus": 5}]}, "coefficients.0.bonus"),
        ({"cap_multiple": "0.5"}, "cap_multiple"),
        ({"packages": ["basic_medical", "beauty"]}, "packages.1"),
        ({"packages": []}, "packages"),
        ({"pool_share": "abc"}, "pool_share"),
        ({"coefficients": [{"member_id": 2**40, "coefficient": "1"}]}, "coefficients.0.member_id"),
        ({"packages": [["basic_medical"]]}, "packages.0"),
        ({"note": "a\x00b"}, "note"),
        ({"coefficients": [{"member_id": "STAFF1", "coefficient": "1", "note": "\x00"}]}, "coefficients.0.note"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_field_and_nothing_is_stored(
    tree_app, tree_client, sandbox, pc_world, change, field
):
    clinic, staff = _staff(tree_app, pc_world)
    admin = _admin_of(tree_client, sandbox, pc_world, clinic)
    with tree_app.app_context():
        outsider = db.session().scalar(
            sa.select(OrgMember.id).where(OrgMember.userid == pc_world.other_county_admin.userid)
        )
    body = _rule(staff)
    for entry in change.get("coefficients", []):
        entry["member_id"] = {"STAFF1": staff[1][0], "OUTSIDER": outsider}.get(entry["member_id"], entry["member_id"])
    body.update(change)
    reply = tree_client.put(f"{API}/institutions/{clinic}/distribution-rules", json=body, headers=admin)
    assert reply.status_code == 422, reply.get_json()
    assert reply.get_json()["error"]["field"] == field
    with tree_app.app_context():
        assert db.session().scalar(sa.select(sa.func.count()).select_from(DistributionRule)) == 0


def test_the_year_is_distributed_once(tree_app, pc_world):
    """Advances count purchase × their advance share; the true-up the rest of the year's purchase (not the gap:
    fee income is earned by the same work); an advance the true-up did not subtract, or a true-up while an
    advance is still open, is refused."""
    institution = pc_world.institution_ids[0]

    def settlement(kind: str, period: str, purchase: int, state: str = "approved", **more) -> Settlement:
        return Settlement(
            institution_id=institution,
            county_id=pc_world.county_id,
            kind=kind,
            period=period,
            state=state,
            equivalents={},
            prices={},
            coefficient=Decimal(1),
            purchase_amount=Decimal(purchase),
            gap_subsidy=Decimal(purchase) / 10,  # the gap variant: not the basis
            line_item_amount=Decimal(50),
            payable=Decimal(0),
            created_by="t",
            **more,
        )

    with tree_app.app_context():
        session = db.session()
        january = settlement("advance", "2026-01", 1000, snapshot={"scheme": {"advance_share": "0.8"}})
        february = settlement("advance", "2026-02", 2000, snapshot={"scheme": {"advance_share": "0.75"}})
        session.add_all([january, february])
        session.flush()
        annual = settlement("annual", "2026", 3300, snapshot={"advances": [{"id": january.id}, {"id": february.id}]})
        session.add(annual)
        session.flush()
        assert distribution.service_payment(session, january)[0] == Decimal(800)
        assert distribution.service_payment(session, february)[0] == Decimal(1500)
        basis, how = distribution.service_payment(session, annual)
        assert basis == Decimal(1000) and how["advances"] == {"2026-01": "800.00", "2026-02": "1500.00"}
        assert distribution._year_conflict(session, january) is None
        assert distribution._year_conflict(session, annual) is None
        # March approved after the true-up: it was not subtracted, so it is not distributed.
        march = settlement("advance", "2026-03", 500, snapshot={"scheme": {"advance_share": "0.8"}})
        session.add(march)
        session.flush()
        assert "年度清算未扣除" in distribution._year_conflict(session, march)
        # A true-up while an advance of its year is still open.
        march.state = "submitted"
        session.flush()
        assert "2026-03" in distribution._year_conflict(session, annual)
        session.rollback()


def test_the_database_keeps_one_confirmed_distribution_per_settlement(tree_app, world: World):
    institution = world.seed.institutions[0]
    with tree_app.app_context():
        session = db.session()
        settled = Settlement(
            institution_id=institution,
            county_id=world.pc.county_id,
            kind="advance",
            period=MONTH,
            state="approved",
            equivalents={},
            prices={},
            coefficient=Decimal(1),
            purchase_amount=Decimal(100),
            line_item_amount=Decimal(0),
            payable=Decimal(80),
            snapshot={},
            created_by="t",
        )
        rule = DistributionRule(
            institution_id=institution,
            pool_share=Decimal("0.5"),
            coefficient_min=Decimal(1),
            coefficient_max=Decimal(1),
            packages=["basic_medical"],
            set_by="t",
        )
        session.add_all([settled, rule])
        session.flush()

        def confirmed(revision: int) -> Distribution:
            return Distribution(
                settlement_id=settled.id,
                institution_id=institution,
                period=MONTH,
                revision=revision,
                state="confirmed",
                rule_id=rule.id,
                basis=Decimal(80),
                pool=Decimal(40),
                average_amount=Decimal(0),
                total_points=Decimal(1),
                point_value=Decimal(40),
                snapshot={},
                created_by="t",
            )

        session.add(confirmed(1))
        session.flush()
        session.add(confirmed(2))
        with pytest.raises(sa.exc.IntegrityError):
            session.flush()
        session.rollback()
