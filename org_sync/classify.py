"""Classify a DingTalk department into a level of the five-level tree, and that level into a layer.

DingTalk departments carry no level, so it is inferred, in this order (first that decides wins):

1. **override** — an admin's correction (`OrgNode.level_override`); syncs never write it, so it survives them.
2. **position** — beneath an internal department everything is internal (a 病区 of a 内科, a 团队 of a 科).
   Reported as source `depth`: it is the node's place in the tree that decides.
3. **code** — a department `code` that is a well-formed 18-character 统一社会信用代码 (GB 32100) makes the node a
   registered unit, never an internal department. Its first two characters say what kind: `11` is a government
   organ (机关: a commission or bureau), `12` a public institution (事业单位: a hospital). For an organ the six-digit
   division code in characters 3-8 gives the level (`xx0000` province, `xxxx00` city, otherwise county); for an
   institution the parent decides (under a bureau or above: a medical-community lead; below: a member). Any
   other code (a local numbering scheme) only says "unit", and the name then chooses the level.
4. **name** — the patterns in `config/org_levels.yaml`: unit patterns by level, then internal patterns. When
   several unit levels match, the one expected beneath the parent wins.
5. **depth** — nothing matched: the root is the province commission; a node whose parent is known is an
   internal department of it; a node whose parent is unknown (an event that arrived first) takes the level its
   depth implies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from org_sync.models import LEVELS

DEFAULT_RULES = Path(__file__).resolve().parents[1] / "config" / "org_levels.yaml"
INTERNAL = "internal_department"
UNIT_LEVELS = LEVELS[:-1]
RANK = {level: i for i, level in enumerate(LEVELS)}
LAYERS_BY_LEVEL = {
    "province_commission": "administrative",  # 行政层
    "city_commission": "administrative",
    "county_bureau": "administrative",
    "medical_community_lead": "operational",  # 运营层
    "member_institution": "service",  # 服务层
    "internal_department": "service",
}
# The unit level expected directly beneath a node of each level (None: the root).
CHILD_UNIT: dict[str | None, str] = {
    None: "province_commission",
    "province_commission": "city_commission",
    "city_commission": "county_bureau",
    "county_bureau": "medical_community_lead",
    "medical_community_lead": "member_institution",
    "member_institution": "member_institution",
}
# The level implied by depth alone (root = 0), for nodes whose parent level is unknown.
DEPTH_LEVELS = LEVELS[:5]

_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


@dataclass(frozen=True)
class Classification:
    level: str
    layer: str
    source: str  # override | code | name | depth


@dataclass(frozen=True)
class Rules:
    """The compiled name patterns of `config/org_levels.yaml`."""

    units: dict[str, tuple[re.Pattern[str], ...]] = field(default_factory=dict)
    internal: tuple[re.Pattern[str], ...] = ()
    strip: re.Pattern[str] | None = None

    def unit_levels(self, name: str) -> list[str]:
        """The unit levels whose patterns match `name`, top level first."""
        return [level for level in UNIT_LEVELS if any(p.search(name) for p in self.units.get(level, ()))]

    def is_internal(self, name: str) -> bool:
        return any(p.search(name) for p in self.internal)

    def core_name(self, name: str) -> str:
        """The name without a trailing bracketed note, e.g. "（医共体总院）"."""
        name = name.strip()
        if self.strip is not None:
            stripped = self.strip.sub("", name).strip()
            if stripped:
                return stripped
        return name


def _compile_rules(raw: dict) -> Rules:
    units = {}
    for level, patterns in (raw.get("units") or {}).items():
        if level not in UNIT_LEVELS:
            raise ValueError(f"org_levels: unknown unit level {level!r} (expected one of {', '.join(UNIT_LEVELS)})")
        units[level] = tuple(re.compile(p) for p in patterns or ())
    internal = tuple(re.compile(p) for p in raw.get("internal") or ())
    strip = re.compile(raw["strip"]) if raw.get("strip") else None
    return Rules(units=units, internal=internal, strip=strip)


@lru_cache(maxsize=8)
def _load(path: Path) -> Rules:
    with path.open(encoding="utf-8") as fh:
        return _compile_rules(yaml.safe_load(fh) or {})


def load_rules(path: Path | None = None) -> Rules:
    """The rules of `path` (default `config/org_levels.yaml`), read and compiled once per path."""
    return _load(Path(path or DEFAULT_RULES).resolve())


def classification(level: str, source: str) -> Classification:
    return Classification(level, LAYERS_BY_LEVEL[level], source)


def uscc_kind(code: str | None) -> str | None:
    """ "organ" / "institution" / "other" for a well-formed 统一社会信用代码, None when `code` is not one."""
    if not code or len(code) != 18:
        return None
    code = code.upper()
    if any(c not in _USCC_CHARS for c in code):
        return None
    body = code[8:16]
    total = sum(int(c, 36) * w for c, w in zip(body, _ORG_CODE_WEIGHTS, strict=True))
    check = 11 - total % 11
    if code[16] != ("X" if check == 10 else "0" if check == 11 else str(check)):
        return None
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(code[:17], _USCC_WEIGHTS, strict=True))
    if code[17] != _USCC_CHARS[(31 - total % 31) % 31]:
        return None
    return {"11": "organ", "12": "institution"}.get(code[:2], "other")


def _organ_level(code: str) -> str:
    division = code[2:8]
    if division.endswith("0000"):
        return "province_commission"
    if division.endswith("00"):
        return "city_commission"
    return "county_bureau"


def _pick_unit(candidates: list[str], parent_level: str | None) -> str:
    """Among the unit levels a name suggests, the one expected beneath the parent, else the first below it."""
    expected = CHILD_UNIT.get(parent_level, "member_institution")
    if not candidates or expected in candidates:
        return expected
    below = [c for c in candidates if parent_level is None or RANK[c] > RANK[parent_level]]
    return below[0] if below else expected


def classify(
    name: str,
    code: str | None,
    parent_level: str | None,
    depth: int,
    override: str | None = None,
    rules: Rules | None = None,
) -> Classification:
    """The level, layer and deciding source of one department; see the module docstring for the order."""
    if override in LEVELS:
        return classification(override, "override")
    if parent_level == INTERNAL:
        return classification(INTERNAL, "depth")
    rules = rules or load_rules()
    core = rules.core_name(name or "")

    kind = uscc_kind(code) if code else None
    if kind == "organ":
        return classification(_organ_level(code.upper()), "code")
    if kind == "institution":
        at_or_above_bureau = parent_level is None or RANK[parent_level] <= RANK["county_bureau"]
        return classification("medical_community_lead" if at_or_above_bureau else "member_institution", "code")
    if code and code.strip():
        return classification(_pick_unit(rules.unit_levels(core), parent_level), "code")

    candidates = rules.unit_levels(core)
    if candidates:
        return classification(_pick_unit(candidates, parent_level), "name")
    if rules.is_internal(core):
        return classification(INTERNAL, "name")

    if depth <= 0:
        return classification("province_commission", "depth")
    if parent_level is not None:
        return classification(INTERNAL, "depth")
    return classification(DEPTH_LEVELS[depth] if depth < len(DEPTH_LEVELS) else INTERNAL, "depth")
