"""Contacts read APIs (§2), all legacy oapi: departments, users, paging, lookups.

Replies are rendered from the generated province exactly in DingTalk's field names. The sandbox-only `level` of
a department is never included: the workbench must infer levels the way it will have to on a real org.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sandbox.errors import OapiError, oapi_ok
from sandbox.inputs import int_field, oapi_body
from sandbox.keys import state_of

if TYPE_CHECKING:
    from sandbox.province import Province, SandboxDepartment, SandboxUser

routes = web.RouteTableDef()

ROOT_DEPT = 1
MAX_PAGE = 100
ORDER_FIELDS = ("entry_asc", "entry_desc", "modify_asc", "modify_desc", "custom")
_MOBILE = re.compile(r"^(\+?86-?)?1\d{10}$")


def render_dept_brief(dept: SandboxDepartment) -> dict[str, Any]:
    """A `listsub` item: no `order`, no managers (§2.1)."""
    out: dict[str, Any] = {
        "dept_id": dept.dept_id,
        "name": dept.name,
        "create_dept_group": dept.create_dept_group,
        "auto_add_user": dept.auto_add_user,
    }
    if dept.parent_id is not None:
        out["parent_id"] = dept.parent_id
    if dept.source_identifier:
        out["source_identifier"] = dept.source_identifier
    return out


def render_dept(province: Province, dept: SandboxDepartment) -> dict[str, Any]:
    """A `department/get` result."""
    members = province.dept_userids(dept.dept_id)
    out = render_dept_brief(dept)
    out.update(
        {
            "order": dept.order,
            "dept_manager_userid_list": list(dept.manager_userids),
            "member_count": len(members),
            "owning_member_count": len(members),
            "hide_dept": False,
            "outer_dept": False,
            "group_contain_sub_dept": False,
            "from_union_org": False,
            "auto_approve_apply": False,
            "dept_permits": [],
            "user_permits": [],
            "outer_permit_depts": [],
            "outer_permit_users": [],
            "tags": "",
        }
    )
    if dept.code:
        out["code"] = dept.code
    return out


def _user_common(user: SandboxUser) -> dict[str, Any]:
    out: dict[str, Any] = {
        "userid": user.userid,
        "unionid": user.unionid,
        "name": user.name,
        "avatar": "",
        "state_code": "86",
        "mobile": user.mobile,
        "hide_mobile": False,
        "telephone": user.telephone,
        "job_number": user.job_number,
        "title": user.title,
        "email": user.email,
        "org_email": "",
        "work_place": user.work_place,
        "remark": user.remark,
        "dept_id_list": list(user.dept_ids),
        "extension": "",
        "active": user.active,
        "admin": user.admin,
        "boss": user.boss,
        "exclusive_account": False,
    }
    if user.hired_date:
        out["hired_date"] = user.hired_date
    return out


def manager_of(province: Province, user: SandboxUser) -> str | None:
    """The user's manager: the first manager, other than themself, up their first department's chain."""
    if not user.dept_ids:
        return None
    for dept_id in province.parent_chain(user.dept_ids[0]):
        dept = province.departments.get(dept_id)
        if dept is None:
            continue
        for manager in dept.manager_userids:
            if manager != user.userid:
                return manager
    return None


def render_user(province: Province, user: SandboxUser) -> dict[str, Any]:
    """A `v2/user/get` result."""
    out = _user_common(user)
    roles = []
    if user.admin:
        roles.append({"id": 1000001, "name": "主管理员", "group_name": "默认"})
    if any(user.leader_in_dept.get(d, False) for d in user.dept_ids):
        roles.append({"id": 1000002, "name": "负责人", "group_name": "职务"})
    out.update(
        {
            "dept_order_list": [{"dept_id": d, "order": user.dept_orders.get(d, 0)} for d in user.dept_ids],
            "leader_in_dept": [
                {"dept_id": d, "leader": bool(user.leader_in_dept.get(d, False))} for d in user.dept_ids
            ],
            "role_list": roles,
            "real_authed": True,
            "senior": False,
            "union_emp_ext": {},
        }
    )
    manager = manager_of(province, user)
    if manager:
        out["manager_userid"] = manager
    return out


def render_list_user(user: SandboxUser, dept_id: int) -> dict[str, Any]:
    """A `v2/user/list` item: `dept_order` and `leader` refer to the listed department."""
    out = _user_common(user)
    out["dept_order"] = user.dept_orders.get(dept_id, 0)
    out["leader"] = bool(user.leader_in_dept.get(dept_id, False))
    return out


def _dept_id(body: dict[str, Any], errcode: int, *, default: int | None = None) -> int:
    raw = body.get("dept_id", default)
    value = int_field(raw)
    if value is None:
        raise OapiError(errcode, "参数 dept_id 不合法" if raw not in (None, "") else "缺少参数 dept_id")
    return value


def _dept(province: Province, dept_id: int) -> SandboxDepartment:
    dept = province.departments.get(dept_id)
    if dept is None:
        raise OapiError(60003, "部门不存在")
    return dept


def _user(province: Province, userid: Any) -> SandboxUser:
    if not isinstance(userid, str) or not userid:
        raise OapiError(40035, "缺少参数 userid")
    user = province.users.get(userid)
    if user is None:
        raise OapiError(60121, "找不到该用户")
    return user


@routes.post("/topapi/v2/department/listsub")
async def listsub(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await oapi_body(request)
    dept_id = _dept_id(body, 400002, default=ROOT_DEPT)
    with state.lock:
        province = state.province
        _dept(province, dept_id)
        result = [render_dept_brief(province.departments[c]) for c in province.children(dept_id)]
    return oapi_ok(result=result)


@routes.post("/topapi/v2/department/listsubid")
async def listsubid(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await oapi_body(request)
    dept_id = _dept_id(body, 400002)
    with state.lock:
        _dept(state.province, dept_id)
        ids = list(state.province.children(dept_id))
    return oapi_ok(result={"dept_id_list": ids})


@routes.post("/topapi/v2/department/get")
async def department_get(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await oapi_body(request)
    dept_id = _dept_id(body, 400002)
    with state.lock:
        result = render_dept(state.province, _dept(state.province, dept_id))
    return oapi_ok(result=result)


@routes.post("/topapi/v2/department/listparentbydept")
async def listparentbydept(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await oapi_body(request)
    dept_id = _dept_id(body, 400002)
    with state.lock:
        _dept(state.province, dept_id)
        chain = state.province.parent_chain(dept_id)
    return oapi_ok(result={"parent_id_list": chain})


@routes.post("/topapi/v2/department/listparentbyuser")
async def listparentbyuser(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await oapi_body(request)
    with state.lock:
        user = _user(state.province, body.get("userid"))
        parents = [{"parent_dept_id_list": state.province.parent_chain(d)} for d in user.dept_ids]
    return oapi_ok(result={"parent_list": parents})


def _page_args(body: dict[str, Any]) -> tuple[int, int, int, str]:
    dept_id = _dept_id(body, 40035)
    cursor = int_field(body.get("cursor", 0))
    size = int_field(body.get("size"))
    if cursor is None or cursor < 0:
        raise OapiError(40035, "参数 cursor 不合法")
    if size is None or not 1 <= size <= MAX_PAGE:
        raise OapiError(40035, f"参数 size 不合法，取值范围 1-{MAX_PAGE}")
    order = body.get("order_field") or "custom"
    if order not in ORDER_FIELDS:
        raise OapiError(40035, "参数 order_field 不合法")
    return dept_id, cursor, size, order


def _ordered_members(province: Province, dept_id: int, order: str) -> list[SandboxUser]:
    users = [province.users[u] for u in province.dept_userids(dept_id) if u in province.users]
    if order == "entry_asc":
        users.sort(key=lambda u: (u.hired_date, u.userid))
    elif order == "entry_desc":
        users.sort(key=lambda u: (-u.hired_date, u.userid))
    elif order == "modify_asc":
        users.sort(key=lambda u: (u.modified_at, u.userid))
    elif order == "modify_desc":
        users.sort(key=lambda u: (-u.modified_at, u.userid))
    return users


def _page(users: list[SandboxUser], cursor: int, size: int) -> tuple[list[SandboxUser], dict[str, Any]]:
    page = users[cursor : cursor + size]
    more = cursor + size < len(users)
    paging: dict[str, Any] = {"has_more": more}
    if more:
        paging["next_cursor"] = cursor + size
    return page, paging


@routes.post("/topapi/v2/user/list")
async def user_list(request: web.Request) -> web.Response:
    state = state_of(request)
    dept_id, cursor, size, order = _page_args(await oapi_body(request))
    with state.lock:
        _dept(state.province, dept_id)
        page, paging = _page(_ordered_members(state.province, dept_id, order), cursor, size)
        items = [render_list_user(u, dept_id) for u in page]
    return oapi_ok(result={**paging, "list": items})


@routes.post("/topapi/user/listsimple")
async def user_listsimple(request: web.Request) -> web.Response:
    state = state_of(request)
    dept_id, cursor, size, order = _page_args(await oapi_body(request))
    with state.lock:
        _dept(state.province, dept_id)
        page, paging = _page(_ordered_members(state.province, dept_id, order), cursor, size)
    return oapi_ok(result={**paging, "list": [{"userid": u.userid, "name": u.name} for u in page]})


@routes.post("/topapi/user/listid")
async def user_listid(request: web.Request) -> web.Response:
    state = state_of(request)
    dept_id = _dept_id(await oapi_body(request), 40035)
    with state.lock:
        _dept(state.province, dept_id)
        ids = list(state.province.dept_userids(dept_id))
    return oapi_ok(result={"userid_list": ids})


@routes.post("/topapi/v2/user/get")
async def user_get(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await oapi_body(request)
    with state.lock:
        result = render_user(state.province, _user(state.province, body.get("userid")))
    return oapi_ok(result=result)


@routes.post("/topapi/v2/user/getbymobile")
async def user_getbymobile(request: web.Request) -> web.Response:
    state = state_of(request)
    mobile = (await oapi_body(request)).get("mobile")
    if not isinstance(mobile, str) or not _MOBILE.match(mobile.strip()):
        raise OapiError(40104, "无效的手机号码")
    digits = mobile.strip()[-11:]
    with state.lock:
        user = state.province.user_by_mobile(digits)
    if user is None:
        raise OapiError(60121, "找不到该用户")
    return oapi_ok(result={"userid": user.userid})


@routes.post("/topapi/user/getbyunionid")
async def user_getbyunionid(request: web.Request) -> web.Response:
    state = state_of(request)
    unionid = (await oapi_body(request)).get("unionid")
    if not isinstance(unionid, str) or not unionid:
        raise OapiError(40035, "缺少参数 unionid")
    with state.lock:
        user = state.province.user_by_unionid(unionid)
    if user is None:
        raise OapiError(60121, "找不到该用户")
    return oapi_ok(result={"contact_type": 0, "userid": user.userid})


@routes.post("/topapi/user/count")
async def user_count(request: web.Request) -> web.Response:
    state = state_of(request)
    only_active = (await oapi_body(request)).get("only_active") in (True, "true", "True", 1, "1")
    with state.lock:
        users = state.province.users.values()
        count = sum(1 for u in users if u.active) if only_active else len(users)
    return oapi_ok(result={"count": count})
