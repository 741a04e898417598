"""Realistic contact changes on a generated province, and the contact events DingTalk would emit for them.

Incremental org sync is only as good as its handling of what really happens in a county's contacts: people are
hired, leave, get promoted or change phone numbers, move between departments or pick up a second one; wards and
family-doctor teams are created, renamed, re-hung and dissolved; and now and then a whole township hospital is
handed to another medical community, which re-parents a subtree under a different lead hospital. This module
applies such changes to a `Province` and returns the events in the order DingTalk would send them, with the
same constraints DingTalk enforces (a department with members or children cannot be deleted, so its people
are moved out first, and that move is an event too).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sandbox import names as N
from sandbox.province import CHINA_TZ, DAY_MS, Province, SandboxDepartment, SandboxUser

EVENT_TYPES = (
    "user_add_org",
    "user_modify_org",
    "user_leave_org",
    "user_dept_change",
    "org_dept_create",
    "org_dept_modify",
    "org_dept_remove",
)


@dataclass(slots=True)
class ContactEvent:
    event_type: str
    user_ids: list[str] = field(default_factory=list)
    dept_ids: list[int] = field(default_factory=list)
    diff: dict | None = None  # user_modify_org only: {"prev": {...}, "curr": {...}}, DingTalk's camelCase keys


# (change, relative weight). One change may emit several events (a removal moves people out first).
_MIX: tuple[tuple[str, float], ...] = (
    ("join", 20),
    ("leave", 14),
    ("modify", 20),
    ("move", 20),
    ("dept_create", 7),
    ("dept_modify", 10),
    ("dept_remove", 6),
    ("institution_move", 3),
)
_CLINIC_SUFFIXES = ("村卫生室", "村卫生服务站", "社区卫生服务站")
_GOV_LEVELS = frozenset({"province_commission", "city_commission", "county_bureau"})


def apply_changes(province: Province, count: int, seed: int) -> list[ContactEvent]:
    """Apply `count` realistic changes to the province (deterministic for its state and `seed`) and return the
    events DingTalk would emit for them, in order. Advances `province.now_ms` and stamps `modified_at`."""
    sim = _Simulator(province, seed)
    for _ in range(count):
        sim.one()
    return sim.events


def _is_clinic(dept: SandboxDepartment) -> bool:
    return dept.name.endswith(_CLINIC_SUFFIXES)


def _lead_base(name: str) -> str:
    """The hospital part of a lead's name: "桐庐县人民医院（医共体总院）" → "桐庐县人民医院"."""
    for suffix in ("（医共体总院）", "医共体总院", "医疗集团", "医共体"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


class _Simulator:
    def __init__(self, province: Province, seed: int) -> None:
        self.p = province
        self.rng = random.Random(f"sandbox-changes:{seed}")
        self.events: list[ContactEvent] = []
        # Sampling pools, refreshed lazily: entries of removed users/departments are skipped when drawn.
        self.userids = list(province.users)
        self.dept_ids = list(province.departments)
        self.kinds = [k for k, _ in _MIX]
        self.weights = [w for _, w in _MIX]

    # ---- plumbing ----

    def one(self) -> None:
        """Apply one change; a change that does not fit the province right now is replaced by another kind."""
        for _ in range(20):
            kind = self.rng.choices(self.kinds, self.weights)[0]
            if getattr(self, f"_{kind}")():
                return
        if not self._join():  # always possible while the org has a department below the root
            raise RuntimeError("no change applies to this province")

    def tick(self) -> int:
        self.p.now_ms += self.rng.randrange(5_000, 900_000)
        return self.p.now_ms

    def emit(self, event_type: str, *, users: list[str] | None = None, depts: list[int] | None = None,
             diff: dict | None = None) -> None:  # fmt: skip
        self.events.append(ContactEvent(event_type, list(users or []), list(depts or []), diff))

    def user(self, accept: Callable[[SandboxUser], bool] | None = None) -> SandboxUser | None:
        users = self.p.users
        if len(self.userids) > 2 * len(users) + 16:
            self.userids = list(users)
        if not self.userids:
            return None
        for _ in range(40):
            user = users.get(self.rng.choice(self.userids))
            if user is not None and (accept is None or accept(user)):
                return user
        return None

    def dept(self, accept: Callable[[SandboxDepartment], bool]) -> SandboxDepartment | None:
        depts = self.p.departments
        if len(self.dept_ids) > 2 * len(depts) + 16:
            self.dept_ids = list(depts)
        for _ in range(60):
            dept = depts.get(self.rng.choice(self.dept_ids))
            if dept is not None and accept(dept):
                return dept
        return None

    def internal_of(self, unit_id: int, *, clinics: bool = False) -> list[int]:
        """Internal departments of a unit (not those of institutions below it), optionally with clinics."""
        p = self.p
        out: list[int] = []
        stack = p.children(unit_id)
        while stack:
            dept_id = stack.pop(0)
            dept = p.departments[dept_id]
            if dept.level != "internal_department" or (not clinics and _is_clinic(dept)):
                continue
            out.append(dept_id)
            stack.extend(p.children(dept_id))
        return out

    def management_office(self, dept_id: int) -> int | None:
        """The 医共体管理办公室 of the medical community a department belongs to, if any."""
        p = self.p
        for ancestor in p.parent_chain(dept_id):
            if p.departments[ancestor].level == "medical_community_lead":
                for kid in p.children(ancestor):
                    if "医共体管理" in p.departments[kid].name:
                        return kid
                return None
        return None

    def refill_leaders(self, dept_ids: list[int]) -> None:
        """A department that lost its last leader usually gets a new one soon (a manager change = dept modify)."""
        p = self.p
        for dept_id in dept_ids:
            dept = p.departments.get(dept_id)
            if dept is None or dept.manager_userids or self.rng.random() >= 0.6:
                continue
            members = p.dept_userids(dept_id)
            if members:
                p.set_leader(members[0], dept_id, True)
                self.tick()
                self.emit("org_dept_modify", depts=[dept_id])

    def set_departments(self, user: SandboxUser, dept_ids: list[int]) -> list[int]:
        """Change a user's departments; returns the departments where they were a leader and no longer are."""
        lost = [d for d in user.dept_ids if d not in dept_ids and user.leader_in_dept.get(d)]
        self.p.change_user_departments(user.userid, dept_ids)
        user.modified_at = self.tick()
        return lost

    def hire(self, dept_id: int, colleague: SandboxUser | None) -> SandboxUser:
        """A new person for a department, shaped like its current members."""
        p, rng = self.p, self.rng
        members = [p.users[u] for u in p.dept_userids(dept_id)]
        peers = [u for u in members if not u.leader_in_dept.get(dept_id)] or members
        model = rng.choice(peers) if peers else colleague
        title = model.title if model else "科员"
        female = rng.random() < (0.95 if "护" in title else 0.45)
        name = N.person_name(rng, female)
        now = self.tick()
        hired = now - (now + 8 * 3_600_000) % DAY_MS
        year = datetime.fromtimestamp(now / 1000, CHINA_TZ).year
        domain = model.email.partition("@")[2] if model and model.email else ""
        user = SandboxUser(
            p.new_userid(rng),
            p.new_unionid(rng),
            name,
            p.new_mobile(rng),
            title,
            "" if _is_clinic(p.departments[dept_id]) else f"{year}{rng.randrange(10_000):04d}",
            f"{N.name_pinyin(name)}{rng.randrange(1, 100)}@{domain}" if domain and rng.random() < 0.5 else "",
            hired,
            [dept_id],
            {},
            {},
            work_place=model.work_place if model else "",
            modified_at=now,
        )
        p.add_user(user)
        self.userids.append(user.userid)
        return user

    # ---- people ----

    def _join(self) -> bool:
        """user_add_org: someone is hired into a department (where a random colleague works, so big
        departments hire more)."""
        p, rng = self.p, self.rng
        colleague = self.user()
        if colleague is not None:
            dept_id = rng.choice(colleague.dept_ids)
            if p.departments[dept_id].level != "internal_department":
                inside = self.internal_of(dept_id)
                dept_id = rng.choice(inside) if inside else dept_id
        else:
            dept = self.dept(lambda d: d.parent_id is not None)
            if dept is None:
                return False
            dept_id = dept.dept_id
        user = self.hire(dept_id, colleague)
        self.emit("user_add_org", users=[user.userid])
        return True

    def _leave(self) -> bool:
        """user_leave_org: someone leaves; their departments may get a new leader."""
        user = self.user(lambda u: not u.admin and not u.boss)
        if user is None:
            return False
        led = [d for d in user.dept_ids if user.leader_in_dept.get(d)]
        self.p.remove_user(user.userid)
        self.tick()
        self.emit("user_leave_org", users=[user.userid])
        self.refill_leaders(led)
        return True

    def _modify(self) -> bool:
        """user_modify_org: a promotion, a new phone number, a corrected name, a new e-mail …"""
        p, rng = self.p, self.rng
        user = self.user()
        if user is None:
            return False
        what = rng.choices(
            ("title", "mobile", "name", "email", "jobNumber", "telephone", "workPlace"), (45, 20, 10, 10, 5, 5, 5)
        )[0]
        if what == "title" and user.title in N.PROMOTIONS:
            changes: dict[str, object] = {"title": N.PROMOTIONS[user.title]}
        elif what == "name":
            surname = user.name[:2] if user.name[:2] in N.PINYIN and len(user.name[:2]) == 2 else user.name[0]
            new = surname + N.given_name(rng, rng.random() < 0.5)
            if new == user.name:
                return False
            changes = {"name": new}
        elif what == "email":
            domain = user.email.partition("@")[2] or "health.example.com"
            changes = {"email": f"{N.name_pinyin(user.name)}{rng.randrange(100, 1000)}@{domain}"}
        elif what == "jobNumber":
            changes = {"job_number": f"{rng.randrange(10**5, 10**6)}"}
        elif what == "telephone":
            changes = {
                "telephone": "" if user.telephone else f"05{rng.randrange(70, 81)}-{rng.randrange(10**7, 10**8)}"
            }
        elif what == "workPlace":
            unit = p.departments[p.owner_unit(user.dept_ids[0])].name
            if unit == user.work_place:
                return False
            changes = {"work_place": unit}
        else:
            changes = {"mobile": p.new_mobile(rng)}
        changed = p.update_user(user.userid, **changes)
        if not changed:
            return False
        user.modified_at = self.tick()
        keys = {"job_number": "jobNumber", "work_place": "workPlace"}
        diff = {
            "prev": {keys.get(k, k): old for k, (old, _) in changed.items()},
            "curr": {keys.get(k, k): new for k, (_, new) in changed.items()},
        }
        self.emit("user_modify_org", users=[user.userid], diff=diff)
        return True

    def _move(self) -> bool:
        """user_dept_change: a move inside the institution, a transfer to another one of the same kind, or
        gaining/losing a second department (e.g. a secondment to the medical community's management office).
        Moves go where people with the same title already work, so a nurse moves to another ward."""
        p, rng = self.p, self.rng
        how = rng.choices(("within", "transfer", "gain", "lose"), (45, 15, 25, 15))[0]
        if how == "lose":
            user = self.user(lambda u: len(u.dept_ids) > 1)
            if user is None:
                return False
            drop = rng.choice(user.dept_ids[1:])
            new = [d for d in user.dept_ids if d != drop]
        elif how == "transfer":
            user = self.user(self.movable)
            if user is None:
                return False
            unit = p.owner_unit(user.dept_ids[0])
            gov = p.departments[unit].level in _GOV_LEVELS

            def fits(u: SandboxUser) -> bool:
                other = p.owner_unit(u.dept_ids[0])
                return (
                    u.title == user.title
                    and other != unit
                    and self.movable(u)
                    and (p.departments[other].level in _GOV_LEVELS) == gov
                )

            other = self.user(fits)
            if other is None:
                return False
            new = [other.dept_ids[0]]
        else:
            user = self.user(self.movable if how == "within" else lambda u: len(u.dept_ids) < 3)
            if user is None:
                return False
            primary = user.dept_ids[0]
            internal = [d for d in self.internal_of(p.owner_unit(primary)) if d not in user.dept_ids]
            same = [d for d in internal if any(p.users[m].title == user.title for m in p.dept_userids(d))]
            choices = same or internal
            office = self.management_office(primary)
            if how == "gain" and office is not None and office not in user.dept_ids and rng.random() < 0.4:
                choices = [office]
            if not choices:
                return False
            target = rng.choice(choices)
            new = [*user.dept_ids, target] if how == "gain" else [target, *user.dept_ids[1:]]
        if new == user.dept_ids:
            return False
        lost = self.set_departments(user, new)
        self.emit("user_dept_change", users=[user.userid])
        self.refill_leaders(lost)
        return True

    def movable(self, user: SandboxUser) -> bool:
        """Staff of an internal department (unit heads and the org's boss don't get shuffled around)."""
        return not user.boss and self.p.departments[user.dept_ids[0]].level == "internal_department"

    # ---- departments ----

    def _dept_create(self) -> bool:
        """org_dept_create: a new division, clinical centre, ward, family-doctor team or village clinic; often
        staffed straight away by moving or hiring people."""
        p, rng = self.p, self.rng
        someone = self.user()
        if someone is None:
            return False
        unit_id = p.owner_unit(someone.dept_ids[0])
        unit = p.departments[unit_id]
        internal = self.internal_of(unit_id, clinics=True)
        names = [p.departments[d].name for d in internal]
        candidates: list[tuple[int, str]] = []
        if unit.level in _GOV_LEVELS:
            suffix = "处" if unit.level == "province_commission" else "科"
            candidates = [(unit_id, f"{n}{suffix}") for n in N.NEW_GOV_DIVISIONS]
        elif any("家庭医生" in n for n in names) or any(n.endswith(_CLINIC_SUFFIXES) for n in names):
            teams = sum("家庭医生团队" in n for n in names)
            candidates = [(unit_id, n) for n in N.NEW_TOWNSHIP_DEPTS]
            candidates.append((unit_id, f"家庭医生团队{teams + 1}"))
            village = rng.choice(N.VILLAGE_FIRST) + rng.choice(N.VILLAGE_SECOND)
            candidates.append((unit_id, f"{village}村卫生室"))
        else:
            candidates = [(unit_id, n) for n in N.NEW_HOSPITAL_DEPTS]
            wardable = [d for d in internal if p.departments[d].name.endswith("科") and rng.random() < 0.2]
            candidates += [(d, f"{p.departments[d].name}病区") for d in wardable]
            candidates += [(d, f"{p.departments[d].name}二病区") for d in wardable]
        rng.shuffle(candidates)
        for parent_id, name in candidates:
            if not p.has_child_named(parent_id, name):
                break
        else:
            return False
        group = rng.random() < 0.3
        dept = SandboxDepartment(
            p.new_dept_id(rng), name, parent_id, p.next_child_order(parent_id), None, None, [],
            "internal_department", group, group,
        )  # fmt: skip
        p.add_department(dept)
        self.dept_ids.append(dept.dept_id)
        self.tick()
        self.emit("org_dept_create", depts=[dept.dept_id])
        r = rng.random()
        if r < 0.5:  # staffed from the unit's own people, one admin action per person
            pool = [u for d in internal for u in p.dept_userids(d)]
            for userid in list(dict.fromkeys(rng.sample(pool, min(len(pool), rng.randint(1, 3))))):
                user = p.users[userid]
                if dept.dept_id in user.dept_ids:
                    continue
                new = [dept.dept_id, *user.dept_ids[1:]] if rng.random() < 0.6 else [*user.dept_ids, dept.dept_id]
                lost = self.set_departments(user, new)
                self.emit("user_dept_change", users=[userid])
                self.refill_leaders(lost)
        elif r < 0.7:
            self.emit("user_add_org", users=[self.hire(dept.dept_id, someone).userid])
        return True

    def _rename_for(self, dept: SandboxDepartment) -> str | None:
        """A realistic new name for an internal department, or None."""
        name = dept.name
        if name in N.RENAMES:
            return N.RENAMES[name]
        if name.endswith("村卫生室"):
            return name[: -len("卫生室")] + "卫生服务站"
        if name.endswith("村卫生服务站"):
            return name[: -len("卫生服务站")] + "卫生室"
        if name.endswith("病区"):
            return name[: -len("病区")] + "护理单元"
        if name.startswith("家庭医生团队") and dept.manager_userids:
            return f"{self.p.users[dept.manager_userids[0]].name}家庭医生团队"
        return None

    def _dept_modify(self) -> bool:
        """org_dept_modify: a rename, a re-hang inside the same institution, an institution's new name, or a new
        department leader."""
        p, rng = self.p, self.rng
        how = rng.choices(("rename", "reparent", "institution", "leader"), (45, 35, 10, 10))[0]
        if how == "rename":
            dept = self.dept(lambda d: d.level == "internal_department" and self._rename_for(d) is not None)
            if dept is None:
                return False
            name = self._rename_for(dept)
            if name is None or name == dept.name or p.has_child_named(dept.parent_id, name):
                return False
            p.rename_department(dept.dept_id, name)
        elif how == "reparent":
            for _ in range(5):
                dept = self.dept(lambda d: d.level == "internal_department" and not _is_clinic(d))
                target = self._reparent_target(dept) if dept is not None else None
                if target is not None:
                    break
            else:
                return False
            p.move_department(dept.dept_id, target)
        elif how == "institution":
            dept = self.dept(lambda d: d.level in ("member_institution", "medical_community_lead"))
            if dept is None:
                return False
            name = dept.name
            if name.endswith("）"):
                new = name[: name.index("（")]
            elif name.endswith("镇卫生院") and "中心卫生院" not in name:
                new = name[: -len("卫生院")] + "中心卫生院"
            elif dept.level == "medical_community_lead" and "医共体" not in name and "医疗集团" not in name:
                new = f"{name}（医共体总院）"
            else:
                return False
            if p.has_child_named(dept.parent_id, new):
                return False
            p.rename_department(dept.dept_id, new)
        else:
            dept = self.dept(lambda d: d.parent_id is not None and p.member_count(d.dept_id) >= 2)
            if dept is None:
                return False
            members = p.dept_userids(dept.dept_id)
            newcomer = rng.choice([u for u in members if u not in dept.manager_userids] or members)
            for userid in list(dept.manager_userids):
                p.set_leader(userid, dept.dept_id, False)
            p.set_leader(newcomer, dept.dept_id, True)
        self.tick()
        self.emit("org_dept_modify", depts=[dept.dept_id])
        return True

    def _reparent_target(self, dept: SandboxDepartment) -> int | None:
        """Where a department plausibly gets re-hung inside its own institution: a ward under another clinical
        department, a family-doctor team under public health or the institution, a nested department back
        under the institution, a specialty under its 内科/外科 group."""
        p, rng = self.p, self.rng
        unit_id = p.owner_unit(dept.dept_id)
        internal = self.internal_of(unit_id)
        name = dept.name
        if "病区" in name:
            targets = [
                t for t in internal
                if p.departments[t].name.endswith(("内科", "外科"))
                or any("病区" in p.departments[k].name for k in p.children(t))
            ]  # fmt: skip
        elif "家庭医生团队" in name:
            groups = ("公共卫生", "预防保健", "家庭医生签约")
            targets = [unit_id, *(t for t in internal if any(g in p.departments[t].name for g in groups))]
        elif dept.parent_id != unit_id:
            targets = [unit_id]
        elif name.endswith(("内科", "外科")) and name not in ("内科", "外科"):
            group = name[-2:]
            targets = [t for t in internal if p.departments[t].name == group]
        else:
            return None
        inside = set(p.subtree(dept.dept_id))
        targets = [t for t in targets if t not in inside and t != dept.parent_id and not p.has_child_named(t, name)]
        return rng.choice(targets) if targets else None

    def _removable(self, dept: SandboxDepartment) -> bool:
        """Departments that really get dissolved: empty ones, and small village clinics, family-doctor teams,
        wards and centres; never one with sub-departments (DingTalk refuses)."""
        p = self.p
        if dept.level != "internal_department" or p.children(dept.dept_id):
            return False
        members = p.member_count(dept.dept_id)
        if members == 0:
            return True
        kinds = ("家庭医生", "病区", "护理单元", "中心", "门诊", "团队")
        return members <= 12 and (_is_clinic(dept) or any(k in dept.name for k in kinds))

    def _dept_remove(self) -> bool:
        """org_dept_remove: an internal leaf department is dissolved. DingTalk refuses to delete a department
        with members, so its people are first moved to the parent (one batch user_dept_change)."""
        p = self.p
        dept = self.dept(self._removable)
        if dept is None:
            return False
        moved: list[str] = []
        lost: list[int] = []
        for userid in p.dept_userids(dept.dept_id):
            user = p.users[userid]
            rest = [d for d in user.dept_ids if d != dept.dept_id] or [dept.parent_id]
            lost += self.set_departments(user, rest)
            moved.append(userid)
        if moved:
            self.emit("user_dept_change", users=moved)
        p.remove_department(dept.dept_id)
        self.tick()
        self.emit("org_dept_remove", depts=[dept.dept_id])
        self.refill_leaders([d for d in dict.fromkeys(lost) if d != dept.dept_id])
        return True

    def _institution_move(self) -> bool:
        """org_dept_modify on a member institution: it is handed to another medical community (same county if
        possible, else same city), re-parenting its whole subtree; a name that carries the old community's
        name follows the new one."""
        p, rng = self.p, self.rng
        inst = self.dept(lambda d: d.level == "member_institution")
        if inst is None:
            return False
        old_lead = p.departments[inst.parent_id]
        bureau = old_lead.parent_id
        city = p.departments[bureau].parent_id if bureau is not None else None
        leads = [d for d in p.children(bureau) if p.departments[d].level == "medical_community_lead"]
        leads = [d for d in leads if d != old_lead.dept_id]
        if not leads and city is not None:
            leads = [
                lead
                for b in p.children(city)
                for lead in p.children(b)
                if p.departments[lead].level == "medical_community_lead" and lead != old_lead.dept_id
            ]
        if not leads:
            return False
        new_lead = p.departments[rng.choice(leads)]
        old_base, new_base = _lead_base(old_lead.name), _lead_base(new_lead.name)
        name = inst.name
        for marker in ("医共体", "医疗集团"):
            if f"{old_base}{marker}" in name:
                name = name.replace(f"{old_base}{marker}", f"{new_base}医共体")
                break
        else:
            if name.startswith(old_base) and name.endswith("分院"):
                name = new_base + name[len(old_base) :]
        if p.has_child_named(new_lead.dept_id, name):
            return False
        if name != inst.name and p.has_child_named(inst.parent_id, name):
            if p.has_child_named(new_lead.dept_id, inst.name):
                return False
            p.move_department(inst.dept_id, new_lead.dept_id)  # the new name is taken here, so move first
            p.rename_department(inst.dept_id, name)
        else:
            p.rename_department(inst.dept_id, name)
            p.move_department(inst.dept_id, new_lead.dept_id)
        self.tick()
        self.emit("org_dept_modify", depts=[inst.dept_id])
        return True
