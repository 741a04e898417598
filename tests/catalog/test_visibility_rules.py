"""The visibility rules on hand-built principals (no database): levels, layers, roles, subtrees."""

from __future__ import annotations

from mini_apps.catalog.service import Vantage, can_open, vantages
from workbench.auth.principal import Position, Principal, Role

PROVINCE = "/1/"
COUNTY = "/1/2/3/"
CLINIC = "/1/2/3/4/5/"  # a township health centre (member institution) of the county
CLINIC_DEPT = "/1/2/3/4/5/6/"  # its 全科 (internal department)
BUREAU_OFFICE = "/1/2/3/7/"  # the county bureau's 办公室


def position(path: str, level: str, layer: str, unit_path: str, unit_level: str) -> Position:
    node_id = int(path.strip("/").split("/")[-1])
    unit_id = int(unit_path.strip("/").split("/")[-1])
    return Position(node_id, "n", path, level, layer, False, unit_id, "u", unit_level, unit_path)


def clinic_doctor() -> Principal:
    return Principal(
        member_id=1,
        corp_id="c",
        userid="doc",
        name="医生",
        positions=(position(CLINIC_DEPT, "internal_department", "service", CLINIC, "member_institution"),),
        roles=(Role("clinician", 5, CLINIC, "position"),),
    )


def bureau_staffer() -> Principal:
    return Principal(
        member_id=2,
        corp_id="c",
        userid="adm",
        name="科员",
        # The classifier calls every internal department 服务层, even a bureau's 办公室.
        positions=(position(BUREAU_OFFICE, "internal_department", "service", COUNTY, "county_bureau"),),
        roles=(Role("admin", 3, COUNTY, "position"),),
    )


def opens(principal: Principal, subtrees=(PROVINCE,), **rules) -> bool:
    return can_open(vantages(principal), subtrees, **rules)


def test_a_department_clinician_matches_their_institution_level_and_the_service_layer():
    doctor = clinic_doctor()
    assert opens(doctor, levels=["member_institution"])
    assert opens(doctor, levels=["internal_department"])
    assert not opens(doctor, levels=["county_bureau", "medical_community_lead"])
    assert opens(doctor, layers=["service"])
    assert not opens(doctor, layers=["administrative", "operational"])
    assert opens(doctor, roles=["clinician"]) and not opens(doctor, roles=["admin", "institution_admin"])


def test_a_bureau_department_counts_as_administrative_not_service():
    staffer = bureau_staffer()
    assert opens(staffer, layers=["administrative"])
    assert not opens(staffer, layers=["service", "operational"])
    assert opens(staffer, levels=["county_bureau"]) and opens(staffer, roles=["admin"])


def test_every_rule_must_hold_at_the_same_position():
    # A member who is a bureau staffer and a clinic doctor: the clinician role is held at the clinic, the
    # administrative layer at the bureau, so "administrative clinicians" matches neither position.
    both = Principal(
        member_id=3,
        corp_id="c",
        userid="both",
        name="兼职",
        positions=bureau_staffer().positions + clinic_doctor().positions,
        roles=bureau_staffer().roles + clinic_doctor().roles,
    )
    assert opens(both, layers=["administrative"], roles=["admin"])
    assert opens(both, layers=["service"], roles=["clinician"])
    assert not opens(both, layers=["administrative"], roles=["clinician"])
    # the county admin role covers the clinic too (it is inside the county)
    assert opens(both, layers=["service"], roles=["admin"])


def test_subtrees_are_path_prefixes():
    doctor = clinic_doctor()
    assert opens(doctor, subtrees=[COUNTY])
    assert opens(doctor, subtrees=[CLINIC])
    assert not opens(doctor, subtrees=["/1/2/9/"])  # another county
    assert not opens(doctor, subtrees=[])  # a subtree whose node is gone: nobody


def test_a_grant_outside_ones_positions_matches_only_apps_without_level_or_layer_rules():
    office = "/1/2/3/4/8/"  # 转诊办 of the clinic's lead hospital; the doctor does not sit in it
    doctor = clinic_doctor()
    coordinator = Principal(
        member_id=1,
        corp_id="c",
        userid="doc",
        name="医生",
        positions=doctor.positions,
        roles=(*doctor.roles, Role("referral_coordinator", 8, office, "grant", 1)),
    )
    assert Vantage(office, None, None, frozenset({"referral_coordinator"})) in vantages(coordinator)
    assert opens(coordinator, subtrees=[office], roles=["referral_coordinator"])
    assert not opens(coordinator, subtrees=[office], roles=["referral_coordinator"], layers=["service"])
    assert not opens(doctor, subtrees=[office])
