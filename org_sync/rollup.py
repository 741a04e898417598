"""Rolling facts up the tree: figures kept per unit (an institution, a bureau) summed at every node above it, so a
parent's rate is the sum of its units' numerators over the sum of their denominators, never a mean of rates.
Used by the supervision figures of the apps (family-doctor signing, referrals)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy import orm

from org_sync.models import OrgNode
from workbench.auth.principal import INSTITUTION_LEVELS

REPORTED_LEVELS = ("province_commission", "city_commission", "county_bureau", *INSTITUTION_LEVELS)


def anchor(session: orm.Session, root_ids: Sequence[int] | None = None) -> sa.CTE | None:
    """The roll-up pairing: a CTE `anchor(node_id, unit_id)` of every live node of
    `REPORTED_LEVELS` with each unit (of those levels) at or below it, limited to the subtrees of `root_ids` when
    given; None when none of the roots is live. Joining per-unit facts to it on `unit_id` and grouping by `node_id`
    sums them up every level of the tree."""
    if root_ids is not None:
        root_paths = list(
            session.scalars(sa.select(OrgNode.path).where(OrgNode.id.in_(root_ids), OrgNode.deleted_at.is_(None)))
        )
        if not root_paths:
            return None
    node = orm.aliased(OrgNode, name="node")
    unit = orm.aliased(OrgNode, name="unit")
    # Units include deleted ones, whose facts still count where they were; the paths are digits and slashes, so
    # LIKE needs no escaping.
    pairs = sa.select(node.id.label("node_id"), unit.id.label("unit_id")).where(
        unit.path.startswith(node.path),
        unit.level.in_(REPORTED_LEVELS),
        node.level.in_(REPORTED_LEVELS),
        node.deleted_at.is_(None),
    )
    if root_ids is not None:
        pairs = pairs.where(sa.or_(*(node.path.startswith(path, autoescape=True) for path in root_paths)))
    return pairs.cte("anchor")
