"""Service areas (服务区域) and a campaign's dispatch rules: the maps `dispatch` walks.

Who may map a division (the rule, issue 9):

- a **6-digit** (county) code: an administrator (`admin`: a county bureau, or a commission above it) whose scope
  covers the node; the node must be the county bureau itself or an institution under it (a county mapped to its
  bureau queues its unmatched persons there; mapped to an institution, they go to that institution);
- a **9- or 12-digit** (township, village) code: an administrator as above, or an institution's administrator
  (`institution_admin`) for their own institution; the node must be an institution (or a department in one).
  When the code's 6-digit county is already mapped, the node must lie in that same county: an institution
  cannot claim another county's villages.
- a code already mapped to a unit outside the caller's scope is not theirs: moving it is a 409, deleting it a 404.

Dispatch rules belong to a campaign and are set by an administrator whose scope covers the campaign's owner node;
their prefixes are 2, 4, 6, 9 or 12 digits (province, city, county, township, village), their node lies in the
campaign's subtree, an optional team must be of the node's institution and a named doctor must work there.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy import orm

from mini_apps.family_doctor.models import FamilyDoctorTeam
from mini_apps.precision_control.dispatch import RULE_PREFIX_LENGTHS, _county_of, _institution_of, resolve_target
from mini_apps.precision_control.models import Campaign, DispatchRule, ServiceArea
from org_sync.models import OrgNode
from workbench import audit
from workbench.auth.principal import Principal
from workbench.errors import ApiError

AREA_CODE = re.compile(r"^(\d{6}|\d{9}|\d{12})$")
MAX_BULK = 5000


def _area_view(area: ServiceArea) -> dict:
    return {
        "id": area.id,
        "division_code": area.division_code,
        "node_id": area.node_id,
        "team_id": area.team_id,
        "set_by": area.set_by,
        "set_at": area.set_at,
    }


def _check_area(
    session: orm.Session, principal: Principal, item: dict, existing: ServiceArea | None, prefix: str = ""
) -> None:
    """422 naming the field (with `prefix`, e.g. "items.3.") when the mapping is not the caller's to make."""
    code = item["division_code"]
    if not AREA_CODE.match(code):
        raise ApiError("invalid", "行政区划代码须为6、9或12位数字", status=422, field=f"{prefix}division_code")
    admin = principal.scope("admin")
    either = principal.scope("admin", "institution_admin")
    if existing is not None:
        owner_path = session.scalar(sa.select(OrgNode.path).where(OrgNode.id == existing.node_id))
        if owner_path is None or not either.covers_path(owner_path):
            raise ApiError("conflict", "该区划已由管理范围外的单位负责", status=409, field=f"{prefix}division_code")
    node = session.get(OrgNode, item["node_id"])
    scope = admin if len(code) == 6 else either
    if node is None or node.deleted_at is not None or not scope.covers_path(node.path):
        raise ApiError("invalid", "组织节点不存在或不在管理范围内", status=422, field=f"{prefix}node_id")
    institution = _institution_of(session, node)
    county = _county_of(session, node)
    if len(code) == 6:
        if not (node.level == "county_bureau" or institution is not None) or county is None:
            raise ApiError("invalid", "县级区划须由区县卫健局或其下机构负责", status=422, field=f"{prefix}node_id")
    else:
        if institution is None:
            raise ApiError("invalid", "乡镇、村级区划须由医疗机构负责", status=422, field=f"{prefix}node_id")
        county_area = session.scalar(sa.select(ServiceArea).where(ServiceArea.division_code == code[:6]))
        if county_area is not None and county_area.division_code != code:
            county_node = session.get(OrgNode, county_area.node_id)
            area_county = _county_of(session, county_node) if county_node is not None else None
            if area_county is not None and (county is None or area_county.id != county.id):
                raise ApiError("invalid", "该区划属于其他区县", status=422, field=f"{prefix}node_id")
    team_id = item.get("team_id")
    if team_id is not None:
        team = session.get(FamilyDoctorTeam, team_id)
        if team is None or not team.active or institution is None or team.institution_id != institution.id:
            raise ApiError("invalid", "家庭医生团队不属于该机构或已停用", status=422, field=f"{prefix}team_id")


def set_areas(session: orm.Session, principal: Principal, items: list[dict]) -> dict:
    """Create or move the service areas of `items` ({division_code, node_id, team_id?}), all or none."""
    if not items:
        raise ApiError("invalid", "至少需要一条服务区域", status=422, field="items")
    if len(items) > MAX_BULK:
        raise ApiError("invalid", f"一次最多{MAX_BULK}条", status=422, field="items")
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if item["division_code"] in seen:
            raise ApiError("invalid", "区划代码重复", status=422, field=f"items.{i}.division_code")
        seen[item["division_code"]] = i
    existing = {
        area.division_code: area
        for area in session.scalars(sa.select(ServiceArea).where(ServiceArea.division_code.in_(list(seen))))
    }
    # 6-digit codes first: a village checks its county against the county's mapping made in the same batch.
    order = sorted(range(len(items)), key=lambda i: len(items[i]["division_code"]))
    created = updated = 0
    areas = []
    for i in order:
        item = items[i]
        prefix = f"items.{i}." if len(items) > 1 else ""
        area = existing.get(item["division_code"])
        _check_area(session, principal, item, area, prefix)
        if area is None:
            area = ServiceArea(division_code=item["division_code"])
            session.add(area)
            created += 1
        else:
            updated += 1
        area.node_id, area.team_id, area.set_by = item["node_id"], item.get("team_id"), principal.actor
        session.flush()
        areas.append(area)
    audit.record(
        principal,
        "precision_control.areas.set",
        resource_type="control_service_area",
        detail={"created": created, "updated": updated},
        session=session,
    )
    session.commit()
    return {"created": created, "updated": updated, "items": [_area_view(a) for a in areas]}


def list_areas(session: orm.Session, principal: Principal, query: dict) -> dict:
    """The service areas of units in the caller's scope, by code; `prefix` narrows to codes starting with it."""
    scope = principal.scope("admin", "institution_admin")
    where = [scope.nodes(ServiceArea.node_id)]
    if query.get("prefix"):
        where.append(ServiceArea.division_code.startswith(query["prefix"], autoescape=True))
    if query.get("node_id") is not None:
        where.append(ServiceArea.node_id == query["node_id"])
    total = session.scalar(sa.select(sa.func.count()).select_from(ServiceArea).where(*where))
    areas = session.scalars(
        sa.select(ServiceArea)
        .where(*where)
        .order_by(ServiceArea.division_code)
        .limit(query.get("limit", 100))
        .offset(query.get("offset", 0))
    ).all()
    return {"total": total, "items": [_area_view(a) for a in areas]}


def delete_area(session: orm.Session, principal: Principal, division_code: str) -> None:
    """Remove a mapping the caller could have made (404 when there is none the caller can see)."""
    area = session.scalar(sa.select(ServiceArea).where(ServiceArea.division_code == division_code))
    node_path = area and session.scalar(sa.select(OrgNode.path).where(OrgNode.id == area.node_id))
    scope = principal.scope("admin") if len(division_code) == 6 else principal.scope("admin", "institution_admin")
    if area is None or node_path is None or not scope.covers_path(node_path):
        raise ApiError("not_found", "服务区域不存在", status=404)
    session.delete(area)
    audit.record(
        principal,
        "precision_control.areas.delete",
        resource_type="control_service_area",
        resource_id=area.id,
        node_id=area.node_id,
        detail={"division_code": division_code},
        session=session,
    )
    session.commit()


# -- a campaign's dispatch rules --------------------------------------------------------------------------------


def _campaign_for_admin(session: orm.Session, principal: Principal, campaign_id: int) -> tuple[Campaign, OrgNode]:
    campaign = session.get(Campaign, campaign_id)
    owner = campaign and session.get(OrgNode, campaign.owner_node_id)
    if campaign is None or owner is None or not principal.scope("admin").covers_path(owner.path):
        raise ApiError("not_found", "专项任务不存在", status=404)
    return campaign, owner


def _rule_view(rule: DispatchRule) -> dict:
    return {
        "id": rule.id,
        "campaign_id": rule.campaign_id,
        "division_prefix": rule.division_prefix,
        "node_id": rule.node_id,
        "team_id": rule.team_id,
        "member_id": rule.member_id,
        "created_by": rule.created_by,
    }


def set_rule(session: orm.Session, principal: Principal, campaign_id: int, data: dict) -> dict:
    """Create or replace the campaign's rule for `division_prefix`."""
    campaign, owner = _campaign_for_admin(session, principal, campaign_id)
    if campaign.state == "ended":
        raise ApiError("conflict", "专项任务已结束", status=409)
    prefix = data["division_prefix"]
    if not prefix.isdigit() or len(prefix) not in RULE_PREFIX_LENGTHS:
        raise ApiError("invalid", "区划前缀须为2、4、6、9或12位数字", status=422, field="division_prefix")
    node, _institution, team, member = resolve_target(
        session, principal, data["node_id"], data.get("team_id"), data.get("member_id"), require_institution=False
    )
    if not node.path.startswith(owner.path):
        raise ApiError("invalid", "组织节点不在该专项任务的范围内", status=422, field="node_id")
    rule = session.scalar(
        sa.select(DispatchRule).where(DispatchRule.campaign_id == campaign.id, DispatchRule.division_prefix == prefix)
    )
    if rule is None:
        rule = DispatchRule(campaign_id=campaign.id, division_prefix=prefix)
        session.add(rule)
    rule.node_id = node.id
    rule.team_id = team.id if team else None
    rule.member_id = member.id if member else None
    rule.created_by = principal.actor
    session.flush()
    audit.record(
        principal,
        "precision_control.rule.set",
        resource_type="control_dispatch_rule",
        resource_id=rule.id,
        node_id=node.id,
        detail={"campaign_id": campaign.id},
        session=session,
    )
    session.commit()
    return _rule_view(rule)


def list_rules(session: orm.Session, principal: Principal, campaign_id: int) -> dict:
    campaign, _owner = _campaign_for_admin(session, principal, campaign_id)
    rules = session.scalars(
        sa.select(DispatchRule).where(DispatchRule.campaign_id == campaign.id).order_by(DispatchRule.division_prefix)
    ).all()
    return {"items": [_rule_view(r) for r in rules]}


def delete_rule(session: orm.Session, principal: Principal, campaign_id: int, division_prefix: str) -> None:
    campaign, _owner = _campaign_for_admin(session, principal, campaign_id)
    rule = session.scalar(
        sa.select(DispatchRule).where(
            DispatchRule.campaign_id == campaign.id, DispatchRule.division_prefix == division_prefix
        )
    )
    if rule is None:
        raise ApiError("not_found", "分派规则不存在", status=404)
    session.delete(rule)
    audit.record(
        principal,
        "precision_control.rule.delete",
        resource_type="control_dispatch_rule",
        resource_id=rule.id,
        detail={"campaign_id": campaign.id},
        session=session,
    )
    session.commit()
