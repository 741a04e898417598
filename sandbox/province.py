"""The sandbox's generated province: one DingTalk org whose department tree is the five-level tree.

Root dept 1 is the province health commission (省卫健委) with its divisions; below it the city commissions, the
county bureaus, the medical-community lead hospitals and their member institutions (county hospitals, township
hospitals, community health centres), each with internal departments, wards, family-doctor teams and village
clinics. `level` on each department is sandbox-only ground truth that the product must infer from names and
codes; it never appears in API replies.

Generation is deterministic for (seed, scale, corp_id). Figures for seed 1 (seeds 1-4 vary by a few per cent),
measured with `python -m sandbox.province SCALE SEED` on a 2-core VM (CPython 3.11):

========  ======  ========  ===========  =======  ======  =======  ===========  =======  ========
scale     cities  counties  communities  members  depts   people   multi-dept   time     peak RSS
========  ======  ========  ===========  =======  ======  =======  ===========  =======  ========
small     1       2         4            19       464     1,588    6.6%         0.06 s   17 MB
county    1       1         1            10       352     948      7.7%         0.03 s   16 MB
city      1       10        16           142      4,222   24,762   6.6%         0.8 s    50 MB
province  11      90        161          1,307    39,762  299,638  6.3%         9-13 s   390 MB
========  ======  ========  ===========  =======  ======  =======  ===========  =======  ========

`county` is Wufeng (五峰, Hubei): one bureau, one 医共体 (lead + 中医院 + 妇幼保健院 + 8 township hospitals) and
~140 village clinics. In `province` the 12 core urban districts have no 医共体 (they use a city 医联体). About a
third of the province's RSS is the two small per-user dicts (dept_orders, leader_in_dept) of the interface.
"""

from __future__ import annotations

import bisect
import random
import sys
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import accumulate

from sandbox import names as N

SCALES = ("small", "county", "city", "province")
ROOT_ID = 1
LEVELS = (
    "province_commission",
    "city_commission",
    "county_bureau",
    "medical_community_lead",
    "member_institution",
    "internal_department",
)

CHINA_TZ = timezone(timedelta(hours=8))
# The province's logical "now" at generation; the change simulator advances `Province.now_ms` from here.
BASE_NOW_MS = int(datetime(2025, 6, 30, 9, 0, tzinfo=CHINA_TZ).timestamp() * 1000)
DAY_MS = 86_400_000
YEAR_MS = 365 * DAY_MS


@dataclass(slots=True)
class SandboxDepartment:
    dept_id: int
    name: str
    parent_id: int | None
    order: int
    code: str | None
    source_identifier: str | None
    manager_userids: list[str]
    level: str
    create_dept_group: bool = False
    auto_add_user: bool = False


@dataclass(slots=True)
class SandboxUser:
    userid: str
    unionid: str
    name: str
    mobile: str
    title: str
    job_number: str
    email: str
    hired_date: int
    dept_ids: list[int]
    dept_orders: dict[int, int]
    leader_in_dept: dict[int, bool]
    active: bool = True
    admin: bool = False
    boss: bool = False
    telephone: str = ""
    work_place: str = ""
    remark: str = ""
    modified_at: int = 0


# Fields `Province.update_user` may change; ids, departments and leadership have their own methods.
_UPDATABLE = frozenset(
    {"name", "mobile", "title", "job_number", "email", "hired_date", "active", "admin", "boss", "telephone"}
    | {"work_place", "remark", "modified_at", "unionid"}
)


class Province:
    """The org: departments and users plus the indexes DingTalk's read APIs need.

    Mutate only through the methods below so that the indexes (children, direct members, mobile, unionid) and
    the manager lists stay consistent; `validate()` checks every invariant.
    """

    __slots__ = (
        "_by_mobile",
        "_by_unionid",
        "_children",
        "_members",
        "corp_id",
        "departments",
        "now_ms",
        "scale",
        "seed",
        "users",
    )

    def __init__(self, corp_id: str, *, scale: str = "custom", seed: int = 0, now_ms: int = BASE_NOW_MS) -> None:
        self.corp_id = corp_id
        self.scale = scale
        self.seed = seed
        self.now_ms = now_ms  # logical clock: generation time, advanced by sandbox.changes
        self.departments: dict[int, SandboxDepartment] = {}
        self.users: dict[str, SandboxUser] = {}
        self._children: dict[int, list[int]] = {}
        self._members: dict[int, list[str]] = {}
        self._by_mobile: dict[str, SandboxUser] = {}
        self._by_unionid: dict[str, SandboxUser] = {}

    # ---- reads ----------------------------------------------------------------------------------------------

    def children(self, dept_id: int) -> list[int]:
        """Direct child ids ordered by (order, dept_id); [] for a leaf or an unknown id."""
        return list(self._children.get(dept_id, ()))

    def dept_userids(self, dept_id: int) -> list[str]:
        """Direct members only, ordered by their `dept_orders` for this department; [] if none/unknown."""
        return list(self._members.get(dept_id, ()))

    def member_count(self, dept_id: int) -> int:
        return len(self._members.get(dept_id, ()))

    def user_by_mobile(self, mobile: str) -> SandboxUser | None:
        return self._by_mobile.get(mobile)

    def user_by_unionid(self, unionid: str) -> SandboxUser | None:
        return self._by_unionid.get(unionid)

    def parent_chain(self, dept_id: int) -> list[int]:
        """[dept_id, parent, …, 1] as `listparentbydept` returns it; [] for an unknown id."""
        chain: list[int] = []
        current: int | None = dept_id
        while current is not None:
            dept = self.departments.get(current)
            if dept is None:
                return []
            chain.append(current)
            current = dept.parent_id
        return chain

    def subtree(self, dept_id: int) -> Iterator[int]:
        """dept_id and all its descendants, breadth first."""
        queue = [dept_id]
        for current in queue:
            yield current
            queue.extend(self._children.get(current, ()))

    def owner_unit(self, dept_id: int) -> int:
        """The nearest institution or commission at or above dept_id (internal departments belong to it)."""
        dept = self.departments[dept_id]
        while dept.level == "internal_department" and dept.parent_id is not None:
            dept = self.departments[dept.parent_id]
        return dept.dept_id

    def has_child_named(self, parent_id: int, name: str) -> bool:
        """DingTalk refuses two siblings with the same name (error 60008)."""
        return any(self.departments[c].name == name for c in self._children.get(parent_id, ()))

    # ---- new unique identifiers --------------------------------------------------------------------------------

    def new_dept_id(self, rng: random.Random) -> int:
        while True:
            dept_id = rng.randrange(100_000_000, 1_000_000_000)
            if dept_id not in self.departments:
                return dept_id

    def new_userid(self, rng: random.Random) -> str:
        while True:
            userid = f"0{rng.randrange(10**12, 10**13)}"
            if userid not in self.users:
                return userid

    def new_unionid(self, rng: random.Random) -> str:
        while True:
            unionid = "".join(rng.choices(_UNIONID_ALPHABET, k=20)) + "iE"
            if unionid not in self._by_unionid:
                return unionid

    def new_mobile(self, rng: random.Random) -> str:
        while True:
            mobile = f"{rng.choice(N.MOBILE_PREFIXES)}{rng.randrange(10**8):08d}"
            if mobile not in self._by_mobile:
                return mobile

    # ---- department mutations ----------------------------------------------------------------------------------

    def _child_key(self, dept_id: int) -> tuple[int, int]:
        return (self.departments[dept_id].order, dept_id)

    def next_child_order(self, parent_id: int) -> int:
        kids = self._children.get(parent_id)
        return self.departments[kids[-1]].order + 1 if kids else 1

    def add_department(self, dept: SandboxDepartment) -> SandboxDepartment:
        """Insert a new, empty department; the root is the one with dept_id 1 and no parent."""
        if dept.dept_id in self.departments:
            raise ValueError(f"department {dept.dept_id} exists")
        if dept.dept_id == ROOT_ID:
            if dept.parent_id is not None:
                raise ValueError("the root has no parent")
        elif dept.parent_id not in self.departments:
            raise ValueError(f"parent {dept.parent_id} of {dept.dept_id} does not exist")
        elif self.has_child_named(dept.parent_id, dept.name):
            raise ValueError(f"{dept.parent_id} already has a child named {dept.name}")
        if dept.level not in LEVELS:
            raise ValueError(f"unknown level {dept.level}")
        dept.manager_userids = []
        self.departments[dept.dept_id] = dept
        self._children[dept.dept_id] = []
        self._members[dept.dept_id] = []
        if dept.parent_id is not None:
            bisect.insort(self._children[dept.parent_id], dept.dept_id, key=self._child_key)
        return dept

    def rename_department(self, dept_id: int, name: str) -> None:
        dept = self.departments[dept_id]
        if dept.parent_id is not None and name != dept.name and self.has_child_named(dept.parent_id, name):
            raise ValueError(f"{dept.parent_id} already has a child named {name}")
        dept.name = name

    def move_department(self, dept_id: int, new_parent_id: int) -> None:
        """Re-parent a department (with its subtree), appended after its new siblings."""
        dept = self.departments[dept_id]
        if dept.parent_id is None:
            raise ValueError("the root cannot move")
        if new_parent_id not in self.departments:
            raise ValueError(f"parent {new_parent_id} does not exist")
        if dept_id in self.parent_chain(new_parent_id):
            raise ValueError("a department cannot move under itself")
        if new_parent_id == dept.parent_id:
            return
        if self.has_child_named(new_parent_id, dept.name):
            raise ValueError(f"{new_parent_id} already has a child named {dept.name}")
        self._children[dept.parent_id].remove(dept_id)
        dept.order = self.next_child_order(new_parent_id)
        dept.parent_id = new_parent_id
        bisect.insort(self._children[new_parent_id], dept_id, key=self._child_key)

    def remove_department(self, dept_id: int) -> SandboxDepartment:
        """Delete an empty leaf, as DingTalk does (it refuses departments with members or children)."""
        dept = self.departments[dept_id]
        if dept.parent_id is None:
            raise ValueError("the root cannot be removed")
        if self._children[dept_id] or self._members[dept_id]:
            raise ValueError(f"department {dept_id} still has children or members")
        self._children[dept.parent_id].remove(dept_id)
        del self._children[dept_id], self._members[dept_id], self.departments[dept_id]
        return dept

    # ---- user mutations ------------------------------------------------------------------------------------------

    def _member_key(self, dept_id: int) -> Callable[[str], tuple[int, str]]:
        """Sort key of a department's member list: (dept order, userid)."""
        users = self.users
        return lambda userid: (users[userid].dept_orders[dept_id], userid)

    def _join(self, user: SandboxUser, dept_id: int, leader: bool, order: int | None) -> None:
        members = self._members[dept_id]
        if order is None:
            order = self._next_member_order(dept_id)
        user.dept_orders[dept_id] = order
        user.leader_in_dept[dept_id] = leader
        if not members or order > self.users[members[-1]].dept_orders[dept_id]:
            members.append(user.userid)
        else:
            bisect.insort(members, user.userid, key=self._member_key(dept_id))
        if leader:
            self.departments[dept_id].manager_userids.append(user.userid)

    def _next_member_order(self, dept_id: int) -> int:
        members = self._members[dept_id]
        return self.users[members[-1]].dept_orders[dept_id] + 1 if members else 1

    def _leave(self, user: SandboxUser, dept_id: int) -> None:
        self._members[dept_id].remove(user.userid)
        if user.leader_in_dept.pop(dept_id, False):
            self.departments[dept_id].manager_userids.remove(user.userid)
        user.dept_orders.pop(dept_id, None)

    def add_user(self, user: SandboxUser) -> SandboxUser:
        """Insert a user. dept_orders missing for a department append the user at its end; leader_in_dept
        defaults to False; leaders are added to the department's manager list."""
        if user.userid in self.users:
            raise ValueError(f"userid {user.userid} exists")
        if user.mobile in self._by_mobile:
            raise ValueError(f"mobile {user.mobile} is taken")
        if user.unionid in self._by_unionid:
            raise ValueError(f"unionid {user.unionid} is taken")
        if not user.dept_ids or len(set(user.dept_ids)) != len(user.dept_ids):
            raise ValueError("a user needs at least one department, each once")
        for dept_id in user.dept_ids:
            if dept_id not in self.departments:
                raise ValueError(f"department {dept_id} does not exist")
        orders, leaders = user.dept_orders, user.leader_in_dept
        user.dept_orders, user.leader_in_dept = {}, {}
        self.users[user.userid] = user
        self._by_mobile[user.mobile] = user
        self._by_unionid[user.unionid] = user
        for dept_id in user.dept_ids:
            self._join(user, dept_id, bool(leaders.get(dept_id, False)), orders.get(dept_id))
        return user

    def remove_user(self, userid: str) -> SandboxUser:
        """The user leaves the org: gone from every department, manager list and index. The returned object is
        left as it was, a record of the leaver."""
        user = self.users.pop(userid)
        for dept_id in user.dept_ids:
            self._members[dept_id].remove(userid)
            if user.leader_in_dept.get(dept_id):
                self.departments[dept_id].manager_userids.remove(userid)
        del self._by_mobile[user.mobile], self._by_unionid[user.unionid]
        return user

    def change_user_departments(self, userid: str, dept_ids: list[int], leaders: Collection[int] = ()) -> None:
        """Set the user's departments. Kept departments keep their order and leadership; new ones append the
        user at the end, as leader if listed in `leaders`."""
        user = self.users[userid]
        if not dept_ids or len(set(dept_ids)) != len(dept_ids):
            raise ValueError("a user needs at least one department, each once")
        for dept_id in dept_ids:
            if dept_id not in self.departments:
                raise ValueError(f"department {dept_id} does not exist")
        for dept_id in user.dept_ids:
            if dept_id not in dept_ids:
                self._leave(user, dept_id)
        for dept_id in dept_ids:
            if dept_id not in user.dept_orders:
                self._join(user, dept_id, dept_id in leaders, None)
        user.dept_ids = list(dept_ids)
        user.leader_in_dept = {d: user.leader_in_dept[d] for d in dept_ids}
        user.dept_orders = {d: user.dept_orders[d] for d in dept_ids}

    def set_leader(self, userid: str, dept_id: int, leader: bool) -> None:
        """Make a member the department's leader (主管) or not; keeps manager_userids in step."""
        user = self.users[userid]
        if dept_id not in user.leader_in_dept:
            raise ValueError(f"{userid} is not a member of {dept_id}")
        managers = self.departments[dept_id].manager_userids
        if leader and not user.leader_in_dept[dept_id]:
            managers.append(userid)
        elif not leader and user.leader_in_dept[dept_id]:
            managers.remove(userid)
        user.leader_in_dept[dept_id] = leader

    def update_user(self, userid: str, **changes: object) -> dict[str, tuple[object, object]]:
        """Change plain fields (name, mobile, title …); returns {field: (old, new)} for the ones that changed."""
        user = self.users[userid]
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise ValueError(f"not updatable here: {sorted(unknown)}")
        mobile = changes.get("mobile", user.mobile)
        if mobile != user.mobile and mobile in self._by_mobile:
            raise ValueError(f"mobile {mobile} is taken")
        unionid = changes.get("unionid", user.unionid)
        if unionid != user.unionid and unionid in self._by_unionid:
            raise ValueError(f"unionid {unionid} is taken")
        changed: dict[str, tuple[object, object]] = {}
        for name, value in changes.items():
            old = getattr(user, name)
            if old != value:
                changed[name] = (old, value)
                setattr(user, name, value)
        if "mobile" in changed:
            del self._by_mobile[changed["mobile"][0]]
            self._by_mobile[user.mobile] = user
        if "unionid" in changed:
            del self._by_unionid[changed["unionid"][0]]
            self._by_unionid[user.unionid] = user
        return changed

    # ---- checks and figures --------------------------------------------------------------------------------

    def validate(self, limit: int = 50) -> list[str]:
        """Every broken invariant, as readable strings (empty when the province is consistent)."""
        problems: list[str] = []

        def bad(message: str) -> bool:
            problems.append(message)
            return len(problems) >= limit

        root = self.departments.get(ROOT_ID)
        if root is None or root.parent_id is not None:
            bad("root department 1 missing or has a parent")
            return problems
        depth: dict[int, int] = {ROOT_ID: 1}
        for dept_id, dept in self.departments.items():
            if dept.dept_id != dept_id and bad(f"dept key {dept_id} != {dept.dept_id}"):
                return problems
            if dept_id != ROOT_ID:
                if dept.parent_id not in self.departments and bad(f"{dept_id}: parent {dept.parent_id} missing"):
                    return problems
                chain = self.parent_chain(dept_id)
                if (not chain or chain[-1] != ROOT_ID or len(chain) != len(set(chain))) and bad(f"{dept_id}: cycle"):
                    return problems
                depth[dept_id] = len(chain)
            kids = self._children.get(dept_id)
            if kids is None and bad(f"{dept_id}: no children index"):
                return problems
            for kid in kids or ():
                if (kid not in self.departments or self.departments[kid].parent_id != dept_id) and bad(
                    f"{dept_id}: child index lists {kid}"
                ):
                    return problems
            if kids and kids != sorted(kids, key=self._child_key) and bad(f"{dept_id}: children out of order"):
                return problems
            names = [self.departments[k].name for k in kids or () if k in self.departments]
            if len(names) != len(set(names)) and bad(f"{dept_id}: duplicate sibling names"):
                return problems
            orphan = dept.parent_id is not None and dept_id not in self._children.get(dept.parent_id, ())
            if orphan and bad(f"{dept_id}: missing from parent's children"):
                return problems
            members = self._members.get(dept_id, [])
            member_set = set(members)
            if len(member_set) != len(members) and bad(f"{dept_id}: duplicate members"):
                return problems
            for userid in members:
                user = self.users.get(userid)
                if (user is None or dept_id not in user.dept_orders) and bad(f"{dept_id}: stray member {userid}"):
                    return problems
            if members and all(u in self.users and dept_id in self.users[u].dept_orders for u in members):
                key = self._member_key(dept_id)
                if members != sorted(members, key=key) and bad(f"{dept_id}: members out of order"):
                    return problems
            leaders = [u for u in members if u in self.users and self.users[u].leader_in_dept.get(dept_id)]
            if sorted(leaders) != sorted(dept.manager_userids) and bad(f"{dept_id}: managers != leaders"):
                return problems
        if set(self._children) != set(self.departments) or set(self._members) != set(self.departments):
            bad("index keys differ from departments")
        mobiles: set[str] = set()
        unionids: set[str] = set()
        for userid, user in self.users.items():
            where = f"user {userid}"
            if user.userid != userid:
                bad(f"{where}: key mismatch")
            if not user.dept_ids:
                bad(f"{where}: no department")
            if len(set(user.dept_ids)) != len(user.dept_ids):
                bad(f"{where}: repeated department")
            if set(user.dept_orders) != set(user.dept_ids) or set(user.leader_in_dept) != set(user.dept_ids):
                bad(f"{where}: dept_orders/leader_in_dept keys != dept_ids")
            for dept_id in user.dept_ids:
                if dept_id not in self.departments or userid not in self._members.get(dept_id, ()):
                    bad(f"{where}: not indexed in {dept_id}")
            if user.mobile in mobiles or self._by_mobile.get(user.mobile) is not user:
                bad(f"{where}: mobile {user.mobile} duplicated or not indexed")
            if user.unionid in unionids or self._by_unionid.get(user.unionid) is not user:
                bad(f"{where}: unionid duplicated or not indexed")
            mobiles.add(user.mobile)
            unionids.add(user.unionid)
            if len(problems) >= limit:
                return problems
        if len(self._by_mobile) != len(self.users) or len(self._by_unionid) != len(self.users):
            bad("mobile/unionid index sizes differ from users")
        return problems

    def summary(self) -> dict[str, int]:
        """Counts per level, people, multi-department people and tree depth (for docs, logs and tests)."""
        out: dict[str, int] = dict.fromkeys(LEVELS, 0)
        for dept in self.departments.values():
            out[dept.level] += 1
        out["departments"] = len(self.departments)
        out["users"] = len(self.users)
        out["multi_department_users"] = sum(1 for u in self.users.values() if len(u.dept_ids) > 1)
        out["empty_departments"] = sum(1 for m in self._members.values() if not m)
        depth = {ROOT_ID: 1}
        for dept_id in self.subtree(ROOT_ID):
            for kid in self._children[dept_id]:
                depth[kid] = depth[dept_id] + 1
        out["max_depth"] = max(depth.values())
        return out


_UNIONID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


# ---------------------------------------------------------------------------------------------------------------
# Registration codes
# ---------------------------------------------------------------------------------------------------------------

_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def _org_code_check(body: str) -> str:
    """GB 11714 check character of an 8-character organisation code body (digits or capital letters)."""
    total = sum(int(c, 36) * w for c, w in zip(body, _ORG_CODE_WEIGHTS, strict=True))
    check = 11 - total % 11
    return "X" if check == 10 else "0" if check == 11 else str(check)


def _uscc_check(first17: str) -> str:
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_CHARS[(31 - total % 31) % 31]


def uscc(rng: random.Random, organ: bool, division: str) -> str:
    """A well-formed 18-character 统一社会信用代码 (GB 32100): "11" for a government organ, "12" for a public
    institution such as a hospital, the 6-digit division code, a 9-character organisation code, a check char."""
    body = f"00{rng.randrange(10**6):06d}" if organ else f"4{rng.randrange(10**7):07d}"
    first17 = ("11" if organ else "12") + division + body + _org_code_check(body)
    return first17 + _uscc_check(first17)


def uscc_is_valid(code: str) -> bool:
    """Both check characters of a 统一社会信用代码 are right."""
    if len(code) != 18 or any(c not in _USCC_CHARS for c in code):
        return False
    body = code[8:16]
    return body.isalnum() and code[16] == _org_code_check(body) and code[17] == _uscc_check(code[:17])


# ---------------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Scale:
    """Shape of one scale: which places, how many of each unit, department counts and a staffing factor."""

    province: N.ProvinceData
    cities: tuple[str, ...] | None = None  # None: every city of the province
    counties: tuple[str, ...] | None = None  # None: every county of the chosen cities
    mc_weights: tuple[float, float, float] = (0.25, 0.45, 0.30)  # P(1, 2, 3 医共体) in a county
    townships: tuple[int, int] = (10, 20)  # per county
    fixed_townships: tuple[str, ...] | None = None
    county_units: tuple[str, ...] | None = None  # fixed county-level member units; None: drawn per county
    villages: tuple[int, int] = (10, 18)  # per township hospital
    stations: tuple[int, int] = (3, 7)  # per community health centre
    root_divisions: tuple[int, int] = (22, 30)
    city_divisions: tuple[int, int] = (15, 25)
    county_divisions: tuple[int, int] = (8, 15)
    lead_depts: tuple[int, int] = (32, 62)
    unit_depts: tuple[int, int] = (14, 34)
    township_depts: tuple[int, int] = (8, 15)
    staff_factor: float = 1.0
    multi_dept: float = 0.065


_SCALES: dict[str, _Scale] = {
    "small": _Scale(
        N.ZHEJIANG,
        cities=("杭州市",),
        counties=("桐庐县", "淳安县"),
        mc_weights=(0.0, 1.0, 0.0),
        townships=(6, 8),
        villages=(3, 5),
        stations=(1, 3),
        root_divisions=(20, 24),
        city_divisions=(15, 18),
        county_divisions=(8, 10),
        lead_depts=(30, 36),
        unit_depts=(10, 14),
        township_depts=(8, 10),
        staff_factor=0.38,
    ),
    "county": _Scale(
        N.HUBEI_WUFENG,
        mc_weights=(1.0, 0.0, 0.0),
        fixed_townships=N.WUFENG_TOWNSHIPS,
        county_units=("中医院", "妇幼保健院"),
        villages=(15, 19),
        root_divisions=(20, 24),
        city_divisions=(15, 18),
        county_divisions=(10, 12),
        lead_depts=(36, 42),
        unit_depts=(12, 16),
        township_depts=(8, 11),
        staff_factor=0.41,
    ),
    "city": _Scale(N.ZHEJIANG, cities=("宁波市",), staff_factor=0.88),
    "province": _Scale(N.ZHEJIANG, staff_factor=1.18),
}

_ORDINALS = ("第一", "第二", "第三", "第四", "第五", "第六", "第七", "第八", "第九", "第十")
_UNIT_SHORT = {"中医院": "中医", "妇幼保健院": "妇幼", "第二人民医院": "第二", "中西医结合医院": "中西医结合"}
_GROUP_SUBS = {"内科": N.MEDICINE_SUBS, "外科": N.SURGERY_SUBS, "中医内科": N.TCM_MEDICINE_SUBS}
_OFFICE_NAMES = frozenset({"医共体管理办公室", "医共体管理中心"})


class _TitlePool:
    """A compiled title pool: pick a title and the person's sex in one draw of weights."""

    __slots__ = ("cum", "female", "titles", "total")

    def __init__(self, pool: N.TitlePool) -> None:
        self.titles = [sys.intern(t) for t, _, _ in pool]
        self.cum = list(accumulate(w for _, w, _ in pool))
        self.total = self.cum[-1]
        self.female = [f for _, _, f in pool]

    def pick(self, rng: random.Random) -> tuple[str, bool]:
        i = bisect.bisect(self.cum, rng.random() * self.total)
        return self.titles[i], rng.random() < self.female[i]


@dataclass(frozen=True, slots=True)
class _Staff:
    leaders: tuple[_TitlePool, _TitlePool]
    members: _TitlePool
    size: tuple[int, int]
    scaled: bool
    email_share: float


_STAFF: dict[str, _Staff] = {
    kind: _Staff(
        (_TitlePool(s.leaders[0]), _TitlePool(s.leaders[1])), _TitlePool(s.members), s.size, s.scaled, s.email_share
    )
    for kind, s in N.STAFFING.items()
}


@dataclass(slots=True)
class _Unit:
    """Generation-time context of one institution or commission: what its people share."""

    dept_id: int
    work_place: str
    phone: str
    domain: str
    office_id: int | None = None  # the medical community's management office (医共体管理办公室)
    internal: list[int] = field(default_factory=list)  # internal departments a person may also belong to
    staff: list[SandboxUser] = field(default_factory=list)
    teams: list[int] = field(default_factory=list)  # family-doctor teams


# A department plan node: (name, staffing kind, children).
_Node = tuple[str, str, list]


class _Builder:
    def __init__(self, seed: int, scale: str, corp_id: str) -> None:
        self.rng = random.Random(f"sandbox-province:{seed}:{scale}")
        self.spec = _SCALES[scale]
        self.p = Province(corp_id, scale=scale, seed=seed)
        self.job_seq = 0
        self.ident_seq = 0

    # ---- primitives ----

    def dept(
        self, parent_id: int | None, name: str, level: str, code: str | None = None, ident: str | None = None
    ) -> int:
        rng, p = self.rng, self.p
        dept_id = ROOT_ID if parent_id is None else p.new_dept_id(rng)
        order = 0 if parent_id is None else p.next_child_order(parent_id)
        group = rng.random() < (0.25 if level == "internal_department" else 0.6)
        p.add_department(
            SandboxDepartment(
                dept_id, name, parent_id, order, code, ident, [], level, group, group and rng.random() < 0.8
            )
        )
        return dept_id

    def code(self, organ: bool, division: str) -> str | None:
        return uscc(self.rng, organ, division) if self.rng.random() < 0.65 else None

    def ident(self, division: str) -> str | None:
        if self.rng.random() >= 0.25:
            return None
        self.ident_seq += 1
        return f"WJ{division}{self.ident_seq:05d}"

    def unit(self, dept_id: int, name: str, area_code: str, slug: str, office_id: int | None = None) -> _Unit:
        phone = f"{area_code}-{self.rng.randrange(10**7, 10**8)}"
        return _Unit(dept_id, name, phone, f"{slug}-health.example.com", office_id)

    def person(
        self, unit: _Unit, dept_id: int, title: str, female: bool, leader: bool, email_share: float
    ) -> SandboxUser:
        rng, p = self.rng, self.p
        name = N.person_name(rng, female)
        years_back = rng.randrange(8 * YEAR_MS, 30 * YEAR_MS) if leader else rng.randrange(30 * DAY_MS, 30 * YEAR_MS)
        hired = BASE_NOW_MS - years_back
        hired -= (hired + 8 * 3_600_000) % DAY_MS  # midnight, China time
        email = f"{N.name_pinyin(name)}{rng.randrange(1, 100)}@{unit.domain}" if rng.random() < email_share else ""
        if email_share == 0.0:  # village doctors: no employee number either
            job = ""
        else:
            self.job_seq += 1
            job = f"{self.job_seq:06d}"
        user = SandboxUser(
            p.new_userid(rng),
            p.new_unionid(rng),
            name,
            p.new_mobile(rng),
            title,
            job,
            email,
            hired,
            [dept_id],
            {},
            {dept_id: leader},
            telephone=unit.phone if rng.random() < 0.12 else "",
            work_place=unit.work_place,
            modified_at=max(hired, BASE_NOW_MS - rng.randrange(3 * YEAR_MS)),
        )
        p.add_user(user)
        return user

    def staff(self, unit: _Unit, dept_id: int, kind: str, *, collect: bool = True) -> list[SandboxUser]:
        """People for one department: 1-2 leaders first (so they sort first), then members."""
        rng = self.rng
        st = _STAFF[kind]
        if kind == "village":
            n = rng.choices((1, 2, 3), (55, 35, 10))[0]
        else:
            n = rng.randint(*st.size)
            if st.scaled:
                x = n * self.spec.staff_factor
                n = 0 if rng.random() < 0.01 else max(1, int(x) + (rng.random() < x - int(x)))
        leaders = 0 if n == 0 else 2 if n >= 4 and rng.random() < 0.35 else 1
        out = []
        for i in range(n):
            title, female = (st.leaders[i] if i < leaders else st.members).pick(rng)
            out.append(self.person(unit, dept_id, title, female, i < leaders, st.email_share))
        if collect:
            unit.staff.extend(out)
        return out

    def divisions(self, unit: _Unit, names: tuple[str, ...], core: int, span: tuple[int, int], kind: str) -> None:
        rng = self.rng
        k = min(len(names), rng.randint(*span))
        picked = sorted(range(core)) + sorted(rng.sample(range(core, len(names)), max(0, k - core)))
        for i in picked:
            dept_id = self.dept(unit.dept_id, names[i], "internal_department")
            unit.internal.append(dept_id)
            self.staff(unit, dept_id, kind)

    def multi(self, unit: _Unit) -> None:
        """Give ~5.5% of a unit's people a second (sometimes third) department: another department of the
        same unit, or the medical community's management office."""
        rng, p = self.rng, self.p
        pool = unit.internal
        if not pool:
            return
        for user in unit.staff:
            if rng.random() >= self.spec.multi_dept:
                continue
            extra = []
            if unit.office_id is not None and rng.random() < 0.3:
                extra.append(unit.office_id)
            else:
                extra.append(rng.choice(pool))
            if rng.random() < 0.15:
                extra.append(rng.choice(pool))
            depts = list(dict.fromkeys(user.dept_ids + extra))
            if len(depts) > len(user.dept_ids):
                p.change_user_departments(user.userid, depts)

    # ---- department plans for hospitals ----

    def clinical_leaf(self, name: str, ward_p: float) -> _Node:
        rng = self.rng
        if rng.random() >= ward_p:
            return (name, "clinical", [])
        if rng.random() < 0.7:
            return (name, "clinical_doctors", [(f"{name}病区", "ward", [])])
        return (name, "clinical_doctors", [(f"{name}一病区", "ward", []), (f"{name}二病区", "ward", [])])

    def expand(self, name: str, kind: str, big: bool, ward_p: float) -> _Node:
        rng = self.rng
        if kind == "clinical_group":
            subs = _GROUP_SUBS.get(name, N.MEDICINE_SUBS)
            k = rng.randint(3, min(7, len(subs))) if big else rng.randint(2, 3)
            children: list[_Node] = []
            for i in sorted(rng.sample(range(len(subs)), k)):
                if subs[i] == "骨科" and big and rng.random() < 0.35:
                    orth = [self.clinical_leaf(s, ward_p) for s in N.ORTHOPAEDIC_SUBS[: rng.randint(2, 3)]]
                    children.append(("骨科", "clinical_group", orth))
                else:
                    children.append(self.clinical_leaf(subs[i], ward_p))
            return (name, kind, children)
        if kind == "clinical":
            return self.clinical_leaf(name, ward_p)
        return (name, kind, [])

    def plan(
        self, core: tuple[tuple[str, str], ...], optional: tuple[tuple[str, str], ...], target: int, ward_p: float
    ) -> list[_Node]:
        """Core departments, then optional ones in template order until about `target` departments."""
        big = target >= 40
        nodes = [self.expand(name, kind, big, ward_p) for name, kind in core]
        count = sum(_node_size(n) for n in nodes)
        chosen: list[tuple[int, _Node]] = []
        order = list(range(len(optional)))
        self.rng.shuffle(order)
        for i in order:
            if count >= target:
                break
            node = self.expand(*optional[i], big, ward_p)
            chosen.append((i, node))
            count += _node_size(node)
        return nodes + [node for _, node in sorted(chosen, key=lambda c: c[0])]

    def materialize(self, unit: _Unit, parent_id: int, nodes: list[_Node]) -> None:
        for name, kind, children in nodes:
            dept_id = self.dept(parent_id, name, "internal_department")
            unit.internal.append(dept_id)
            if name in _OFFICE_NAMES:
                unit.office_id = dept_id
            self.staff(unit, dept_id, kind)
            self.materialize(unit, dept_id, children)

    # ---- the tree ----

    def build(self) -> Province:
        rng, spec = self.rng, self.spec
        prov = spec.province
        root_name = f"{prov.name}卫生健康委员会"
        self.dept(None, root_name, "province_commission", uscc(rng, True, prov.code), None)
        first_area = prov.cities[0].area_code
        root = self.unit(ROOT_ID, root_name, first_area, prov.slug)
        heads = self.staff(root, ROOT_ID, "province_head")
        heads[0].boss = True
        self.divisions(root, N.PROVINCE_DIVISIONS, N.PROVINCE_CORE_DIVISIONS, spec.root_divisions, "province_division")
        self.admins(root)
        self.multi(root)
        cities = [c for c in prov.cities if spec.cities is None or c.name in spec.cities]
        for city in cities:
            self.city(city)
        return self.p

    def admins(self, root: _Unit) -> None:
        """The org's main administrator ("manager…" userid, as DingTalk names an org creator) and 2-4 sub-admins."""
        rng, p = self.rng, self.p
        it = next(d for d in root.internal if p.departments[d].name == "规划发展与信息化处")
        userid = f"manager{rng.randint(1000, 9999)}"
        mobile, unionid = p.new_mobile(rng), p.new_unionid(rng)
        hired = BASE_NOW_MS - 9 * YEAR_MS
        hired -= (hired + 8 * 3_600_000) % DAY_MS
        main = SandboxUser(
            userid, unionid, N.person_name(rng, False), mobile, "一级主任科员", "000000",
            f"admin@{root.domain}", hired, [it], {}, {}, admin=True, work_place=root.work_place,
            modified_at=BASE_NOW_MS - 30 * DAY_MS,
        )  # fmt: skip
        p.add_user(main)
        root.staff.append(main)
        for user in rng.sample(root.staff, min(len(root.staff), rng.randint(2, 4))):
            user.admin = True

    def city(self, city: N.City) -> None:
        rng, spec = self.rng, self.spec
        name = f"{city.name}卫生健康委员会" if rng.random() < 0.9 else f"{city.name}卫健委"
        city_id = self.dept(ROOT_ID, name, "city_commission", self.code(True, city.code), self.ident(city.code))
        unit = self.unit(city_id, name, city.area_code, city.slug)
        self.staff(unit, city_id, "city_head")
        self.divisions(unit, N.CITY_DIVISIONS, N.CITY_CORE_DIVISIONS, spec.city_divisions, "city_division")
        self.multi(unit)
        for county in city.counties:
            if spec.counties is None or county.name in spec.counties:
                self.county(city_id, city, county)

    def county(self, city_id: int, city: N.City, county: N.County) -> None:
        rng, spec = self.rng, self.spec
        r = rng.random()
        if county.is_district:
            name = (
                f"{county.name}卫生健康局"
                if r < 0.55
                else f"{city.name}{county.name}卫生健康局"
                if r < 0.9
                else f"{county.name}卫健局"
            )
        else:
            name = (
                f"{county.name}卫生健康局"
                if r < 0.85
                else f"{county.name}卫健局"
                if r < 0.95
                else f"{city.name}{county.name}卫生健康局"
            )
        bureau_id = self.dept(city_id, name, "county_bureau", self.code(True, county.code), self.ident(county.code))
        unit = self.unit(bureau_id, name, city.area_code, city.slug)
        self.staff(unit, bureau_id, "county_head")
        self.divisions(unit, N.COUNTY_DIVISIONS, N.COUNTY_CORE_DIVISIONS, spec.county_divisions, "county_division")
        self.multi(unit)
        if county.core and spec.counties is None:
            return  # core urban districts are served by a city 医联体, not a 医共体
        mcs = rng.choices((1, 2, 3), spec.mc_weights)[0]
        townships = self.townships(county)
        groups: list[list[tuple[str, str, bool, bool]]] = [[] for _ in range(mcs)]
        for i, t in enumerate(rng.sample(townships, len(townships))):
            groups[i % mcs].append(t)
        bases = ["人民医院" if mcs == 1 or rng.random() < 0.5 else "第一人民医院"]
        if mcs >= 2:
            bases.append("中医院" if rng.random() < 0.75 else "第二人民医院")
        if mcs >= 3:
            bases.append("第二人民医院" if bases[1] == "中医院" else "中医院")
        if spec.county_units is not None:
            units = list(spec.county_units)
        else:
            units = ["妇幼保健院"]
            units += [u for u in ("中医院", "第二人民医院") if u not in bases and rng.random() < 0.7]
            units += [u for u, p in (("中西医结合医院", 0.12), ("精神卫生中心", 0.2)) if rng.random() < p]
        prefix = f"{city.name}{county.name}" if county.is_district and rng.random() < 0.25 else county.short
        for i, base in enumerate(bases):
            mine = [u for j, u in enumerate(units) if j % mcs == i]
            self.community(bureau_id, city, county, prefix, base, i, mcs, mine, sorted(groups[i], key=townships.index))

    def townships(self, county: N.County) -> list[tuple[str, str, bool, bool]]:
        """(stem, 镇/乡/街道, is a community health centre, is a central township hospital) per township."""
        rng, spec = self.rng, self.spec
        if spec.fixed_townships is not None:
            return [(t[:-1], t[-1], False, rng.random() < 0.25) for t in spec.fixed_townships]
        n = rng.randint(*spec.townships)
        out = []
        for stem in rng.sample(N.TOWNSHIP_STEMS, n):
            r = rng.random()
            if county.is_district:
                suffix = "街道" if r < 0.6 else "镇"
            else:
                suffix = "镇" if r < 0.65 else "乡" if r < 0.85 else "街道"
            chc = suffix == "街道" or (suffix == "镇" and rng.random() < 0.1)
            central = not chc and suffix == "镇" and rng.random() < 0.25
            out.append((stem, suffix, chc, central))
        return out

    def community(
        self,
        bureau_id: int,
        city: N.City,
        county: N.County,
        prefix: str,
        base: str,
        index: int,
        mcs: int,
        units: list[str],
        townships: list[tuple[str, str, bool, bool]],
    ) -> None:
        """A medical community: the lead hospital with its departments, then its member institutions."""
        rng, spec = self.rng, self.spec
        hospital = f"{prefix}{base}"
        r = rng.random()
        group = f"{hospital}医共体"
        if r < 0.3:
            name = hospital
        elif r < 0.5:
            name = f"{hospital}（医共体总院）"
        elif r < 0.65:
            name = group
        elif r < 0.75:
            name = group = f"{hospital}医疗集团"
        elif r < 0.85:
            name = f"{hospital}医共体总院"
        elif mcs > 1:
            name = group = f"{prefix}{_ORDINALS[index]}医共体"
        else:
            name = f"{prefix}医共体总院"
        lead_id = self.dept(
            bureau_id, name, "medical_community_lead", self.code(False, county.code), self.ident(county.code)
        )
        lead = self.unit(lead_id, name, city.area_code, city.slug)
        self.staff(lead, lead_id, "hospital_head")
        core, optional = (N.TCM_LEAD_CORE, N.TCM_OPTIONAL) if base == "中医院" else (N.LEAD_CORE, N.LEAD_OPTIONAL)
        self.materialize(lead, lead_id, self.plan(core, optional, rng.randint(*spec.lead_depts), 0.22))
        self.multi(lead)
        for suffix in units:
            self.county_unit(lead_id, lead, city, county, prefix, suffix, group)
        for township in townships:
            self.township(lead_id, lead, city, county, prefix, hospital, group, township)

    def county_unit(
        self, lead_id: int, lead: _Unit, city: N.City, county: N.County, prefix: str, suffix: str, group: str
    ) -> None:
        rng = self.rng
        plain = f"{prefix}{suffix}"
        r = rng.random()
        if r < 0.75 or suffix not in _UNIT_SHORT:
            name = plain
        elif r < 0.9:
            name = f"{group}{_UNIT_SHORT[suffix]}分院"
        else:
            name = f"{plain}（{group}成员单位）"
        unit_id = self.dept(lead_id, name, "member_institution", self.code(False, county.code), self.ident(county.code))
        unit = self.unit(unit_id, name, city.area_code, city.slug, lead.office_id)
        self.staff(unit, unit_id, "hospital_head")
        core, optional = N.COUNTY_UNIT_TEMPLATES[suffix]
        self.materialize(unit, unit_id, self.plan(core, optional, rng.randint(*self.spec.unit_depts), 0.1))
        self.multi(unit)

    def township(
        self,
        lead_id: int,
        lead: _Unit,
        city: N.City,
        county: N.County,
        prefix: str,
        hospital: str,
        group: str,
        township: tuple[str, str, bool, bool],
    ) -> None:
        """A township hospital or community health centre with departments, family-doctor teams and village
        clinics (or community health stations)."""
        rng, spec, p = self.rng, self.spec, self.p
        stem, suffix, chc, central = township
        facility = "社区卫生服务中心" if chc else "中心卫生院" if central else "卫生院"
        plain = f"{stem}{suffix}{facility}"
        r = rng.random()
        if r < 0.45:
            name = plain
        elif r < 0.6:
            name = f"{county.short}{plain}"
        elif r < 0.8:
            name = f"{group}{stem}{suffix if chc else ''}分院"
        elif r < 0.85:
            name = f"{hospital}{stem}分院"
        elif r < 0.9:
            name = f"{stem}{facility}"
        else:
            name = f"{plain}（{group}{stem}分院）"
        unit_id = self.dept(lead_id, name, "member_institution", self.code(False, county.code), self.ident(county.code))
        unit = self.unit(unit_id, name, city.area_code, city.slug, lead.office_id)
        self.staff(unit, unit_id, "township_head")
        core, optional = (N.CHC_CORE, N.CHC_OPTIONAL) if chc else (N.TOWNSHIP_CORE, N.TOWNSHIP_OPTIONAL)
        target = rng.randint(*spec.township_depts)
        n_teams = rng.randint(2, 5) if target >= 10 else rng.randint(1, 3)
        nodes = self.plan(core, optional, target - n_teams, 0.0)
        self.materialize(unit, unit_id, nodes)
        self.teams(unit, n_teams)
        self.multi(unit)
        if chc:
            for village in self.village_names(rng.randint(*spec.stations)):
                station_id = self.dept(unit_id, f"{village}社区卫生服务站", "internal_department")
                self.staff(unit, station_id, "station")
            return
        r = rng.random()
        style = "{v}村卫生室" if r < 0.7 else "{v}村卫生服务站" if r < 0.8 else f"{stem}{suffix}{{v}}村卫生室"
        parent = unit_id
        if rng.random() < 0.4:
            folder = rng.choice(("村卫生室", "村级卫生室", "乡村一体化管理办公室"))
            parent = self.dept(unit_id, folder, "internal_department")
            self.staff(unit, parent, "township_office")
        for village in self.village_names(rng.randint(*spec.villages)):
            clinic = self.dept(parent, style.format(v=village), "internal_department")
            for doctor in self.staff(unit, clinic, "village", collect=False):
                if unit.teams and rng.random() < 0.12:  # village doctors serve in a family-doctor team too
                    p.change_user_departments(doctor.userid, [clinic, rng.choice(unit.teams)])

    def teams(self, unit: _Unit, n: int) -> None:
        """Family-doctor teams: directly under the institution, under its public-health department, or under a
        签约服务中心; numbered, or named after their leader."""
        rng, p = self.rng, self.p
        r = rng.random()
        parent = unit.dept_id
        if r < 0.3:
            parent = next(
                (d for d in unit.internal if p.departments[d].name in ("公共卫生科", "预防保健科")), unit.dept_id
            )
        elif r < 0.5:
            parent = self.dept(unit.dept_id, "家庭医生签约服务中心", "internal_department")
            unit.internal.append(parent)
            self.staff(unit, parent, "office")
        style = rng.random()
        for i in range(1, n + 1):
            name = f"家庭医生团队{i}" if style < 0.5 else f"{_ORDINALS[i - 1]}家庭医生团队"
            team = self.dept(parent, name, "internal_department")
            unit.internal.append(team)
            unit.teams.append(team)
            people = self.staff(unit, team, "family_doctor_team")
            if style >= 0.8 and people:  # named after the team leader, as many are
                named = f"{people[0].name}家庭医生团队"
                if not p.has_child_named(parent, named):
                    p.rename_department(team, named)

    def village_names(self, n: int) -> list[str]:
        rng = self.rng
        out: dict[str, None] = {}
        while len(out) < n:
            out[rng.choice(N.VILLAGE_FIRST) + rng.choice(N.VILLAGE_SECOND)] = None
        return list(out)


def _node_size(node: _Node) -> int:
    return 1 + sum(_node_size(c) for c in node[2])


def generate(seed: int, scale: str, corp_id: str) -> Province:
    """Build the province for a scale; the same (seed, scale, corp_id) always gives the same province."""
    if scale not in _SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    return _Builder(seed, scale, corp_id).build()


def _main(argv: list[str]) -> None:
    """`python -m sandbox.province [scale] [seed]`: generate, print the figures, time and peak RSS."""
    import resource

    scale = argv[0] if argv else "small"
    seed = int(argv[1]) if len(argv) > 1 else 1
    started = time.perf_counter()
    province = generate(seed, scale, "dingsandbox")
    elapsed = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for key, value in province.summary().items():
        print(f"{key:24} {value:>9,}")
    print(f"{'seconds':24} {elapsed:>9.2f}\n{'peak RSS MB':24} {rss_mb:>9.0f}")


if __name__ == "__main__":
    _main(sys.argv[1:])
