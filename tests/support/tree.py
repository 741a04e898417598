"""The sandbox truth, navigable: levels, ancestors, who works where; and the stored node of a department."""

from __future__ import annotations

import sqlalchemy as sa

from org_sync.models import OrgNode
from workbench import db

INSTITUTION_LEVELS = ("medical_community_lead", "member_institution")


class Tree:
    def __init__(self, truth: dict) -> None:
        self.depts = {d["dept_id"]: d for d in truth["departments"]}
        self.users = [u for u in truth["users"] if u["active"]]

    def level(self, dept_id: int) -> str:
        return self.depts[dept_id]["_level"]

    def ancestors(self, dept_id: int) -> list[int]:
        """The department and every department above it, nearest first."""
        chain = []
        while dept_id in self.depts:
            chain.append(dept_id)
            dept_id = self.depts[dept_id].get("parent_id")
        return chain

    def unit_of(self, dept_id: int) -> int:
        return next(d for d in self.ancestors(dept_id) if self.level(d) != "internal_department")

    def county_of(self, dept_id: int) -> int | None:
        return next((d for d in self.ancestors(dept_id) if self.level(d) == "county_bureau"), None)

    def counties(self) -> list[int]:
        return [d for d in self.depts if self.level(d) == "county_bureau"]

    def at(self, level: str) -> list[tuple[dict, int]]:
        """(user, dept) for every position in a department of `level`."""
        return [(u, d) for u in self.users for d in u["dept_id_list"] if self.level(d) == level]

    def member_at(self, dept_level: str, unit_level: str | None = None, county: int | None = None) -> dict:
        """A member whose every position is a department of `dept_level` (in a unit of `unit_level`)."""
        for user in self.users:
            if user["dept_id_list"] and all(
                self.level(d) == dept_level
                and (unit_level is None or self.level(self.unit_of(d)) == unit_level)
                and (county is None or self.county_of(d) == county)
                for d in user["dept_id_list"]
            ):
                return user
        raise LookupError((dept_level, unit_level, county))

    def institutions_under(self, county: int) -> list[int]:
        return [d for d in self.depts if self.level(d) in INSTITUTION_LEVELS and self.county_of(d) == county]

    def institution_in(self, county: int) -> int:
        return next(d for d in self.depts if self.level(d) == "member_institution" and self.county_of(d) == county)


def node_id(app, dept_id: int) -> int:
    """The stored node of a DingTalk department."""
    with app.app_context():
        return db.session().scalar(sa.select(OrgNode.id).where(OrgNode.dept_id == dept_id))
