"""The ICD-10 list: codes in any spelling and 医保版 extensions resolve, search finds by code, Chinese, alias and
拼音首字母 with the expected first hit, every curated alias points at a real code, and the search endpoint answers
signed-in members only."""

from __future__ import annotations

import csv

import pytest

from mini_apps.referral import icd10
from mini_apps.referral.icd10 import Diagnosis
from tests.support.auth import bearer, sign_in
from tests.support.tree import Tree

ALIASES = icd10.DATA_FILE.parent / "aliases.csv"


@pytest.mark.parametrize("spelling", ["I63.9", "i63.9", "I639", "i639", " I63.9 ", "I 63.9"])
def test_lookup_accepts_any_spelling_of_a_who_code(spelling):
    assert icd10.lookup(spelling) == Diagnosis("I63.9", "未特指的脑梗死")


def test_lookup_of_a_category():
    assert icd10.lookup("i10") == Diagnosis("I10", "特发性（原发性）高血压")
    assert icd10.lookup("E11") == Diagnosis("E11", "2型糖尿病")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("I10.x00x002", Diagnosis("I10.x00x002", "特发性（原发性）高血压")),
        ("i10.X00X002", Diagnosis("I10.x00x002", "特发性（原发性）高血压")),
        ("E11.900x001", Diagnosis("E11.900x001", "2型糖尿病不伴有并发症")),
        ("J44.100x001", Diagnosis("J44.100x001", "未特指的慢性阻塞性肺病伴有急性加重")),
        ("I63.900", Diagnosis("I63.900", "未特指的脑梗死")),
    ],
)
def test_lookup_accepts_a_national_extension_of_a_known_who_code(given, expected):
    assert icd10.lookup(given) == expected


@pytest.mark.parametrize(
    "code",
    ["", "   ", "I10.9", "Z99.99", "U99", "I10x", "I10.x00x00", "A90", "高血压", "10", "I10.x00x002x"],
)
def test_lookup_of_an_unknown_or_malformed_code_is_none(code):
    # A90 (dengue) was retired by WHO in 2010 and is kept out with the other inactive codes.
    assert icd10.lookup(code) is None


def test_an_extension_of_an_unknown_category_is_none():
    assert icd10.lookup("U99.000x001") is None


@pytest.mark.parametrize(
    ("query", "first"),
    [
        ("I10", "I10"),
        ("i63", "I63"),
        ("I63.9", "I63.9"),
        ("i639", "I63.9"),
        ("J44.", "J44"),
        ("高血压", "I10"),
        ("脑梗死", "I63.9"),
        ("股骨颈骨折", "S72.0"),
        ("结核病后遗症", "B90"),
        ("gxy", "I10"),
        ("GXY", "I10"),
        ("ngs", "I63.9"),
        ("2xtnb", "E11.9"),
        ("jzb", "M47.8"),
        ("冠心病", "I25.1"),
        ("gxb", "I25.1"),
        ("慢阻肺", "J44.9"),
        ("mzf", "J44.9"),
        ("copd", "J44.9"),
        ("脑梗塞", "I63.9"),
        ("糖尿病", "E11.9"),
        ("CKD", "N18.9"),
        ("慢性肾病", "N18.9"),
        ("骨折", "T14.2"),
        ("肺炎", "J18.9"),
    ],
)
def test_search_ranks_the_expected_first_hit(query, first):
    hits = icd10.search(query)
    assert hits and hits[0].code == first, [h.code for h in hits[:5]]
    assert hits[0] == icd10.lookup(first)


def test_search_ranks_exact_code_then_prefix_in_code_order():
    codes = [d.code for d in icd10.search("I63", limit=50)]
    assert codes[:4] == ["I63", "I63.0", "I63.1", "I63.2"]
    assert all(code.startswith("I63") for code in codes)


def test_an_alias_given_to_several_codes_lists_them_together():
    codes = [d.code for d in icd10.search("冠心病")]
    assert codes[:2] == ["I25.1", "I25.9"]


def test_search_ranks_names_starting_with_the_query_before_other_substrings():
    # No alias starts with 溃疡, so only the names decide here.
    names = [d.name for d in icd10.search("溃疡", limit=50)]
    starts = [name.startswith("溃疡") for name in names]
    assert True in starts and False in starts
    assert starts == sorted(starts, reverse=True)


def test_search_respects_the_limit_and_rejects_empty_queries():
    assert len(icd10.search("a", limit=7)) == 7
    assert len(icd10.search("肿瘤")) == 20
    assert icd10.search("") == [] and icd10.search("   ") == []
    assert icd10.search("没有这种病xyz") == []


def test_every_curated_alias_points_at_an_existing_code_and_is_searchable():
    with open(ALIASES, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 100
    for row in rows:
        assert icd10.lookup(row["code"]) is not None, row
        # The alias is merged into the generated list: searching it exactly finds its code among the exact hits.
        codes = [d.code for d in icd10.search(row["alias"], limit=50)]
        assert row["code"] in codes, row


def test_the_list_holds_the_active_who_codes_with_chinese_names():
    entries = icd10._entries()
    assert len(entries) == 12172
    assert len({e.key for e in entries}) == len(entries)
    # Every name is Chinese and every initials string is plain lower-case ASCII.
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in e.diagnosis.name) for e in entries)
    assert all(e.initials.isascii() and e.initials == e.initials.lower() for e in entries)


# -- GET /api/referrals/icd10 ---------------------------------------------------------------------------------------


@pytest.fixture
def member(tree_app, tree_client, sandbox, tree) -> dict[str, str]:
    """Any member of the province, signed in."""
    t = Tree(tree)
    return bearer(sign_in(tree_client, sandbox, t.member_at("county_bureau", county=t.counties()[0])["userid"]))


def test_endpoint_searches_for_a_signed_in_member(tree_client, member):
    reply = tree_client.get("/api/referrals/icd10", query_string={"q": "冠心病"}, headers=member)
    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json()["items"][:2] == [
        {"code": "I25.1", "name": "动脉硬化性心脏病"},
        {"code": "I25.9", "name": "未特指的慢性缺血性心脏病"},
    ]
    reply = tree_client.get("/api/referrals/icd10", query_string={"q": "i63", "limit": 3}, headers=member)
    assert [item["code"] for item in reply.get_json()["items"]] == ["I63", "I63.0", "I63.1"]
    reply = tree_client.get("/api/referrals/icd10", query_string={"q": "gxy"}, headers=member)
    items = reply.get_json()["items"]
    assert len(items) == 20 and items[0] == {"code": "I10", "name": "特发性（原发性）高血压"}
    reply = tree_client.get("/api/referrals/icd10", query_string={"q": "a", "limit": 50}, headers=member)
    assert len(reply.get_json()["items"]) == 50


def test_endpoint_requires_sign_in(tree_client):
    reply = tree_client.get("/api/referrals/icd10", query_string={"q": "高血压"})
    assert reply.status_code == 401


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"q": ""}, "q"),
        ({"q": "   "}, "q"),
        ({}, "q"),
        ({"q": "高" * 51}, "q"),
        ({"q": "高血压", "limit": 0}, "limit"),
        ({"q": "高血压", "limit": 51}, "limit"),
        ({"q": "高血压", "limit": "many"}, "limit"),
    ],
)
def test_endpoint_rejects_bad_input_naming_the_field(tree_client, member, query, field):
    reply = tree_client.get("/api/referrals/icd10", query_string=query, headers=member)
    assert reply.status_code == 422, reply.get_json()
    assert reply.get_json()["error"]["field"] == field
