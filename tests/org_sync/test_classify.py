"""Classification of departments into the five-level tree: the rule order, and accuracy against the sandbox's
ground truth (`_level`) at small, county and city scale."""

from __future__ import annotations

import random
from collections import deque

import pytest

from org_sync.classify import Classification, classify, load_rules, uscc_kind
from sandbox.province import generate, uscc

# Real-looking codes from the sandbox's generator (GB 32100 check characters included).
_rng = random.Random(1)
PROVINCE_ORGAN = uscc(_rng, True, "330000")
CITY_ORGAN = uscc(_rng, True, "330200")
COUNTY_ORGAN = uscc(_rng, True, "330281")
HOSPITAL = uscc(_rng, False, "330281")


def test_override_wins_over_everything():
    result = classify("内科", None, "member_institution", 5, override="medical_community_lead")
    assert result == Classification("medical_community_lead", "operational", "override")


def test_an_unknown_override_is_ignored():
    assert classify("内科", None, "member_institution", 5, override="nonsense").source == "name"


@pytest.mark.parametrize(
    ("code", "parent", "level"),
    [
        (PROVINCE_ORGAN, None, "province_commission"),
        (CITY_ORGAN, "province_commission", "city_commission"),
        (COUNTY_ORGAN, "city_commission", "county_bureau"),
        (HOSPITAL, "county_bureau", "medical_community_lead"),
        (HOSPITAL, "medical_community_lead", "member_institution"),
    ],
)
def test_a_registration_code_makes_a_unit_and_says_which(code, parent, level):
    # The name would say "internal department": the code wins, as the rule order says.
    result = classify("办公室", code, parent, 3)
    assert (result.level, result.source) == (level, "code")


def test_a_malformed_code_is_not_a_registration_code():
    assert uscc_kind(HOSPITAL[:-1] + ("0" if HOSPITAL[-1] != "0" else "1")) is None
    assert uscc_kind("ABC") is None
    assert uscc_kind(HOSPITAL) == "institution"
    # A local numbering scheme still says "unit"; the name picks the level.
    assert classify("某某镇卫生院", "LOCAL-001", "medical_community_lead", 4).level == "member_institution"


@pytest.mark.parametrize(
    ("name", "parent", "level"),
    [
        ("浙江省卫生健康委员会", None, "province_commission"),
        ("杭州市卫生健康委员会", "province_commission", "city_commission"),
        ("金华市卫健委", "province_commission", "city_commission"),
        ("桐庐县卫生健康局", "city_commission", "county_bureau"),
        ("上城区卫健局", "city_commission", "county_bureau"),
        ("桐庐县第一医共体", "county_bureau", "medical_community_lead"),
        ("余姚市人民医院（医共体总院）", "county_bureau", "medical_community_lead"),
        ("宁海县中医院医疗集团", "county_bureau", "medical_community_lead"),
        ("鄞州区人民医院", "county_bureau", "medical_community_lead"),
        ("宁海县第二人民医院（宁海县中医院医疗集团成员单位）", "medical_community_lead", "member_institution"),
        ("八都镇卫生院", "medical_community_lead", "member_institution"),
        ("下各街道社区卫生服务中心", "medical_community_lead", "member_institution"),
        ("象山县第一人民医院医共体柳市分院", "medical_community_lead", "member_institution"),
        ("宁海县妇幼保健院", "medical_community_lead", "member_institution"),
        ("医共体管理办公室", "county_bureau", "internal_department"),
        ("家庭医生签约服务中心", "member_institution", "internal_department"),
        ("内科", "medical_community_lead", "internal_department"),
        ("村级卫生室", "member_institution", "internal_department"),
        ("家庭医生团队3", "member_institution", "internal_department"),
        ("基层卫生健康处", "province_commission", "internal_department"),
    ],
)
def test_name_patterns_with_the_parent_level(name, parent, level):
    result = classify(name, None, parent, 3)
    assert (result.level, result.source) == (level, "name")


def test_everything_under_an_internal_department_is_internal():
    result = classify("某某镇卫生院", HOSPITAL, "internal_department", 6)
    assert (result.level, result.source) == ("internal_department", "depth")


def test_depth_decides_when_nothing_else_does():
    assert classify("某某", None, None, 0).level == "province_commission"
    assert classify("某某", None, "member_institution", 5) == Classification("internal_department", "service", "depth")
    # Parent unknown (an event that arrived before its department): the depth's level.
    assert classify("某某", None, None, 2).level == "county_bureau"


def test_layers_follow_levels():
    assert classify("桐庐县卫生健康局", None, "city_commission", 2).layer == "administrative"
    assert classify("桐庐县第一医共体", None, "county_bureau", 3).layer == "operational"
    assert classify("八都镇卫生院", None, "medical_community_lead", 4).layer == "service"


def test_rules_come_from_a_yaml_file(tmp_path):
    custom = tmp_path / "levels.yaml"
    custom.write_text('units:\n  member_institution: ["诊疗站$"]\ninternal: ["科$"]\n', encoding="utf-8")
    rules = load_rules(custom)
    assert classify("某某诊疗站", None, "medical_community_lead", 4, rules=rules).level == "member_institution"
    assert load_rules(custom) is rules  # cached
    assert load_rules() is load_rules()


def accuracy(scale: str, seed: int) -> tuple[int, int, list[tuple]]:
    """Classify a generated province top-down exactly as a sync sees it (names from listsub, codes from
    department/get) and compare with its ground truth."""
    province = generate(seed, scale, "dingsandboxcorp00001")
    depts = province.departments
    levels: dict[int, str] = {}
    wrong: list[tuple] = []
    queue = deque([(1, 0)])
    while queue:
        dept_id, depth = queue.popleft()
        dept = depts[dept_id]
        levels[dept_id] = classify(dept.name, dept.code, levels.get(dept.parent_id), depth).level
        if levels[dept_id] != dept.level:
            wrong.append((dept.name, dept.level, levels[dept_id]))
        queue.extend((child, depth + 1) for child in province.children(dept_id))
    return len(depts) - len(wrong), len(depts), wrong


@pytest.mark.parametrize(("scale", "seed"), [("small", 7), ("county", 3), ("city", 3), ("city", 1)])
def test_accuracy_against_the_sandbox_truth(scale, seed):
    right, total, wrong = accuracy(scale, seed)
    print(f"{scale} seed {seed}: {right}/{total} = {right / total:.2%}; wrong: {wrong[:10]}")
    assert right / total >= 0.99, wrong[:20]
