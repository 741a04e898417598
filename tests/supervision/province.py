"""A synthetic province for supervision tests at scale: a Zhejiang-sized tree (reference/domain.md §7.3: 1 province
commission, 11 cities, 90 county bureaus, 1–3 medical communities per county, 5–12 member institutions per lead),
generated deterministically, inserted in bulk, with one period's values per reporting unit, and the roll-up
computed independently in Python by walking the generated parents (not the stored paths, not SQL).

The generated tree and values are the truth the tests compare the stored roll-up with; nothing here reads the
database except `insert_tree`, which writes it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import orm

from org_sync.models import OrgNode
from workbench.db import utcnow

CORP = "ding-synthetic-province"
REPORTED_LEVELS = (
    "province_commission",
    "city_commission",
    "county_bureau",
    "medical_community_lead",
    "member_institution",
)
UNIT_LEVELS = {"institution": ("medical_community_lead", "member_institution"), "county": ("county_bureau",)}
LAYERS = {
    "province_commission": "administrative",
    "city_commission": "administrative",
    "county_bureau": "administrative",
    "medical_community_lead": "operational",
    "member_institution": "service",
    "internal_department": "service",
}
PLACES = Decimal("0.0001")
CITIES = 11
COUNTIES = 90


@dataclass
class Node:
    id: int
    parent: int | None
    level: str
    name: str
    deleted: bool = False


@dataclass
class SyntheticProvince:
    nodes: dict[int, Node] = field(default_factory=dict)
    _base: int = 0  # ids start after the nodes already stored

    @property
    def root(self) -> int:
        return next(n.id for n in self.nodes.values() if n.parent is None)

    def add(self, parent: int | None, level: str, name: str) -> int:
        node_id = self._base + len(self.nodes) + 1
        self.nodes[node_id] = Node(node_id, parent, level, name)
        return node_id

    def at(self, *levels: str, live: bool | None = None) -> list[int]:
        return [n.id for n in self.nodes.values() if n.level in levels and (live is None or n.deleted is not live)]

    def units(self, reporting_level: str, live: bool | None = None) -> list[int]:
        """The reporting units of an indicator's reporting level (deleted ones too unless `live`)."""
        return self.at(*UNIT_LEVELS[reporting_level], live=live)

    def chain(self, node_id: int) -> Iterator[int]:
        """The node and every node above it, nearest first, by the generated parents."""
        seen = 0
        current: int | None = node_id
        while current is not None:
            yield current
            current = self.nodes[current].parent
            seen += 1
            assert seen < 16, "a cycle in the generated tree"

    def children(self, node_id: int) -> list[int]:
        return [n.id for n in self.nodes.values() if n.parent == node_id]

    def county_of(self, node_id: int) -> int:
        return next(a for a in self.chain(node_id) if self.nodes[a].level == "county_bureau")


def generate_tree(rng: random.Random, base_id: int) -> SyntheticProvince:
    """The province as node ids and parents, ids from `base_id + 1`: a few internal departments at every level
    (never reporting units), and a few deleted member institutions (their past values still count where they
    were; they are no longer expected)."""
    p = SyntheticProvince(_base=base_id)
    province = p.add(None, "province_commission", "浙江省卫生健康委员会")
    p.add(province, "internal_department", "基层卫生健康处")
    p.add(province, "internal_department", "医政医管处")
    # 90 counties over 11 cities: 8 each, two cities with 9 (Hangzhou, Ningbo have more districts).
    per_city = [9, 9] + [8] * (CITIES - 2)
    assert sum(per_city) == COUNTIES
    for c, count in enumerate(per_city):
        city = p.add(province, "city_commission", f"市卫健委{c + 1:02d}")
        p.add(city, "internal_department", f"市卫健委{c + 1:02d}办公室")
        for k in range(count):
            county = p.add(city, "county_bureau", f"县卫健局{c + 1:02d}-{k + 1}")
            if k == 0:
                p.add(county, "internal_department", f"县卫健局{c + 1:02d}-{k + 1}医政科")
            for m in range(rng.randint(1, 3)):
                lead = p.add(county, "medical_community_lead", f"县人民医院{c + 1:02d}-{k + 1}-{m + 1}")
                department = p.add(lead, "internal_department", f"县人民医院{c + 1:02d}-{k + 1}-{m + 1}内科")
                if m == 0 and k % 4 == 0:
                    p.add(department, "internal_department", "心内病区")  # a ward inside a department
                for j in range(rng.randint(5, 12)):
                    member = p.add(lead, "member_institution", f"卫生院{c + 1:02d}-{k + 1}-{m + 1}-{j + 1}")
                    if j == 0 and k % 3 == 0:
                        p.add(member, "internal_department", "全科诊室")
    members = p.at("member_institution")
    for node_id in rng.sample(members, 6):
        p.nodes[node_id].deleted = True
    return p


def insert_tree(session: orm.Session, p: SyntheticProvince) -> None:
    """One executemany of every node, with materialised paths and depths from the generated parents."""
    now = utcnow()
    rows = []
    for node in sorted(p.nodes.values(), key=lambda n: n.id):
        ancestors = list(p.chain(node.id))[::-1]
        rows.append(
            {
                "id": node.id,
                "corp_id": CORP,
                "dept_id": node.id,
                "parent_id": node.parent,
                "name": node.name,
                "sort_order": node.id,
                "code": f"SP{node.id:06d}",
                "level": node.level,
                "layer": LAYERS[node.level],
                "level_source": "code",
                "level_override": None,
                "path": "/" + "/".join(str(a) for a in ancestors) + "/",
                "depth": len(ancestors) - 1,
                "deleted_at": now if node.deleted else None,
                "created_at": now,
                "updated_at": now,
            }
        )
    session.execute(sa.insert(OrgNode).execution_options(render_nulls=True), rows)
    if session.get_bind().dialect.name == "postgresql":
        # Explicit ids leave the sequence behind: a node inserted later (a sync after this load) would collide.
        session.execute(
            sa.text("SELECT setval(pg_get_serial_sequence('org_nodes', 'id'), (SELECT max(id) FROM org_nodes))")
        )


# -- values ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """What the independent computation needs of an indicator."""

    code: str
    kind: str
    scale: int
    reporting_level: str
    additive: bool
    bounded: bool


Figures = tuple[Decimal, Decimal | None, str | None]  # numerator, denominator, verdict


def quarters(rng: random.Random, low: int, high: int) -> Decimal:
    # Quarters are exact in binary floating point, so SQLite's REAL sums equal the Decimal sums exactly.
    return Decimal(rng.randint(low * 4, high * 4)) / 4


def figures_for(rng: random.Random, spec: Spec, n: int) -> Figures:
    """One unit's figures for an indicator, valid for the feed: every 13th rate has a 0 denominator (and so a 0
    numerator), bounded rates never exceed their denominator."""
    if spec.kind == "count":
        return quarters(rng, 0, 20000), None, None
    if spec.kind == "qualitative":
        passed = rng.random() < 0.7
        return Decimal(int(passed)), Decimal(1), "达标" if passed else "未达标"
    if n % 13 == 0:
        return Decimal(0), Decimal(0), None
    denominator = quarters(rng, 1, 4000)
    if spec.bounded:
        return min(quarters(rng, 0, 4000), denominator), denominator, None
    return quarters(rng, 0, 30000), denominator, None


def generate_values(
    rng: random.Random, p: SyntheticProvince, specs: Iterable[Spec], *, missing: float = 0.12, silent_county: int
) -> tuple[dict[tuple[str, int], Figures], dict[tuple[str, int], Figures]]:
    """One period's figures: (those of live units, to post through the feed; those of deleted units, stored
    directly, as the feed refuses deleted units). About `missing` of the units do not report an indicator, and
    the institutions of `silent_county` report nothing at all (a county at 0% completeness)."""
    live: dict[tuple[str, int], Figures] = {}
    deleted: dict[tuple[str, int], Figures] = {}
    for spec in specs:
        for n, unit in enumerate(sorted(p.units(spec.reporting_level))):
            if rng.random() < missing:
                continue
            if spec.reporting_level == "institution" and p.county_of(unit) == silent_county:
                continue
            target = deleted if p.nodes[unit].deleted else live
            target[(spec.code, unit)] = figures_for(rng, spec, n)
    return live, deleted


def expected_rollup(
    p: SyntheticProvince, specs: Iterable[Spec], values: dict[tuple[str, int], Figures]
) -> dict[tuple[str, int], dict]:
    """Every (indicator code, node id) figure from the truth: each reporting unit's numbers summed into every live
    reported node above it (and itself), found by walking the generated parents."""
    found: dict[tuple[str, int], dict] = {}
    for spec in specs:
        for unit in p.units(spec.reporting_level):
            numbers = values.get((spec.code, unit))
            live_unit = not p.nodes[unit].deleted
            above = list(p.chain(unit)) if spec.additive else [unit]
            for node_id in above:
                node = p.nodes[node_id]
                if node.deleted or node.level not in REPORTED_LEVELS:
                    continue
                item = found.setdefault(
                    (spec.code, node_id),
                    {"numerator": None, "denominator": None, "units_expected": 0, "units_reported": 0},
                )
                if live_unit:
                    item["units_expected"] += 1
                    item["units_reported"] += int(numbers is not None)
                if numbers is not None:
                    item["numerator"] = (item["numerator"] or 0) + numbers[0]
                    if numbers[1] is not None:
                        item["denominator"] = (item["denominator"] or 0) + numbers[1]
    by_code = {spec.code: spec for spec in specs}
    for (code, _node), item in found.items():
        spec = by_code[code]
        numerator, denominator = item["numerator"], item["denominator"]
        if spec.kind == "count":
            item["value"] = numerator
        elif numerator is None or not denominator:
            item["value"] = None
        else:
            item["value"] = (numerator * spec.scale / denominator).quantize(PLACES)
    return found


def json_number(amount: Decimal) -> int | float:
    """A quarter-valued amount as the JSON number a sender would post (exact: quarters are binary fractions)."""
    return int(amount) if amount == amount.to_integral_value() else float(amount)
