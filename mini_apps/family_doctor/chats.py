"""Signed-doctor chats (签约医生群): one DingTalk scene group per family-doctor team, kept in step with the team's
members and contracts.

Who belongs in team T's chat:
- staff: T's members whose org member is active and not deleted;
- residents: residents with a DingTalk account (`dingtalk_userid`) whose current contract is on T and in force on
  the day (stored `active`, start ≤ day ≤ end) — or is a renewal not yet started: renewing a month early makes
  the new contract current and the old one `renewed`, and the resident must not drop out of the chat for that
  month. Residents without an account are reached by other channels.
The owner is the team's leader (the first by member id), else its first member; a team without staff gets no
group. The owner is never removed: when they leave the team the group is handed to the new owner first.

How it stays in step: every write that changes the set (signing, renewing, terminating, team members, the import,
departures) calls `schedule_sync` in its transaction, which queues `sync_team_chat` once it commits. Contracts also
end by the calendar, with no write at all, so `sweep_team_chats` runs daily and syncs every team whose set differs
from what was last confirmed (`ChatMember`), found in one set-based query.

`sync_team_chat` diffs the desired set against `ChatMember` rows and commits rows after every successful call, so
an interrupted sync resumes where it stopped. Userids DingTalk rejects (60121, unknown user) are found by halving
the failed chunk, and remembered as `kind = "rejected"` rows: they do not block the others, and are not retried
on every sync (only by a manual `POST .../chat/sync`, or when the resident's userid changes).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy import event, orm

from bot import groups
from mini_apps.family_doctor import service
from mini_apps.family_doctor.models import ChatMember, Contract, FamilyDoctorTeam, Resident, TeamChat, TeamMember
from org_sync.models import OrgMember, OrgNode
from workbench import audit, db
from workbench.auth.principal import Principal
from workbench.db import utcnow
from workbench.dingtalk.errors import DingTalkError, ThrottledError, TransientError
from workbench.queue import get_queue

log = logging.getLogger(__name__)

# DingTalk's answers for a userid it does not know (or may not put in a group): that person is skipped, the rest go on.
USER_REJECTED = {"60121", "33012"}
MAX_ROUNDS = 3  # a sync re-reads the desired set after applying it, to take in changes made meanwhile
SWEEP_SECONDS = 86400
SWEEP_OFFSET = 16 * 3600 + 20 * 60  # 00:20 China time: right after yesterday's last contract days ended
NO_TEMPLATE = "未配置 DINGTALK_SCENE_GROUP_TEMPLATE_ID"
NO_STAFF = "团队没有在职成员，暂不建群"
_PENDING = "family_doctor.chats.pending"


# -- who belongs ------------------------------------------------------------------------------------------------


def _staff_select(*columns: Any) -> sa.Select:
    return (
        sa.select(*columns)
        .select_from(TeamMember)
        .join(OrgMember, OrgMember.id == TeamMember.member_id)
        .where(OrgMember.active.is_(True), OrgMember.deleted_at.is_(None))
    )


def _resident_select(on: date, *columns: Any) -> sa.Select:
    return (
        sa.select(*columns)
        .select_from(Contract)
        .join(Resident, Resident.id == Contract.resident_id)
        .where(
            Contract.is_current,
            service.state_sql(on).in_(("active", "expiring")),  # stored active and not past its end
            sa.or_(Contract.start_date <= on, Contract.previous_id.is_not(None)),  # started, or continues a term
            Resident.dingtalk_userid.is_not(None),
            Resident.dingtalk_userid != "",
        )
    )


def desired_members(session: orm.Session, team_id: int, on: date | None = None) -> tuple[list[str], list[str]]:
    """(staff userids, owner first; resident userids) who should be in the team's chat on the day."""
    on = on or service.today()
    staff = session.scalars(
        _staff_select(OrgMember.userid)
        .where(TeamMember.team_id == team_id)
        .order_by(TeamMember.role != "leader", OrgMember.id)
    ).all()
    staff = list(dict.fromkeys(staff))
    residents = session.scalars(
        _resident_select(on, Resident.dingtalk_userid).where(Contract.team_id == team_id).order_by(Contract.id)
    ).all()
    return staff, [u for u in dict.fromkeys(residents) if u not in set(staff)]


def teams_out_of_step(session: orm.Session, on: date | None = None) -> list[int]:
    """Teams whose desired chat members differ from their confirmed `ChatMember` rows (or whose owner left the
    team while others remain), in one query: nobody missing, nobody extra (the owner excepted)."""
    on = on or service.today()
    desired = sa.union_all(
        _staff_select(TeamMember.team_id, OrgMember.userid, sa.literal("staff").label("kind")),
        _resident_select(
            on, Contract.team_id, Resident.dingtalk_userid.label("userid"), sa.literal("resident").label("kind")
        ),
    ).cte("desired")
    missing = sa.select(desired.c.team_id).where(
        ~sa.exists().where(ChatMember.team_id == desired.c.team_id, ChatMember.userid == desired.c.userid)
    )
    extra = (
        sa.select(ChatMember.team_id)
        .join(TeamChat, TeamChat.team_id == ChatMember.team_id)
        .where(
            ChatMember.userid != sa.func.coalesce(TeamChat.owner_userid, ""),
            ~sa.exists().where(desired.c.team_id == ChatMember.team_id, desired.c.userid == ChatMember.userid),
        )
    )
    staff_of_chat = sa.and_(desired.c.team_id == TeamChat.team_id, desired.c.kind == "staff")
    owner_left = sa.select(TeamChat.team_id).where(
        TeamChat.open_conversation_id.is_not(None),
        sa.exists().where(staff_of_chat),
        ~sa.exists().where(staff_of_chat, desired.c.userid == TeamChat.owner_userid),
    )
    teams = sa.union(missing, extra, owner_left).subquery()
    return list(session.scalars(sa.select(teams.c.team_id).distinct().order_by(teams.c.team_id)))


# -- for other code -----------------------------------------------------------------------------------------------


def chat_of(session: orm.Session, team_id: int) -> TeamChat | None:
    """The team's chat, if its group exists."""
    chat = session.get(TeamChat, team_id)
    return chat if chat is not None and chat.open_conversation_id else None


def in_chat(session: orm.Session, team_id: int, userid: str) -> bool:
    """Whether DingTalk confirmed this person in the team's chat (a rejected account is not in it)."""
    kind = session.scalar(sa.select(ChatMember.kind).where(ChatMember.team_id == team_id, ChatMember.userid == userid))
    return kind in ("staff", "resident")


# -- scheduling ---------------------------------------------------------------------------------------------------


def schedule_sync(session: orm.Session, *team_ids: int, retry_rejected: bool = False) -> None:
    """Queue `sync_team_chat` for these teams once the caller's transaction commits (nothing on rollback)."""
    pending: dict[int, bool] = session.info.setdefault(_PENDING, {})
    for team_id in team_ids:
        if team_id is not None:
            pending[team_id] = pending.get(team_id, False) or retry_rejected


def schedule_contract_teams(session: orm.Session, contract_ids: Sequence[int], *team_ids: int) -> None:
    """`schedule_sync` for `team_ids` and the teams of these contracts (the import: contracts it made non-current)."""
    teams = set(team_ids)
    ids = list(contract_ids)
    for start in range(0, len(ids), 1000):
        teams.update(session.scalars(sa.select(Contract.team_id).where(Contract.id.in_(ids[start : start + 1000]))))
    schedule_sync(session, *sorted(teams))


@event.listens_for(orm.Session, "after_commit")
def _queue_syncs(session: orm.Session) -> None:
    pending = session.info.pop(_PENDING, None)
    for team_id, retry_rejected in sorted((pending or {}).items()):
        _enqueue(team_id, retry_rejected=retry_rejected)


@event.listens_for(orm.Session, "after_rollback")
def _forget_syncs(session: orm.Session) -> None:
    session.info.pop(_PENDING, None)


def _enqueue(team_id: int, *, on: date | None = None, retry_rejected: bool = False) -> None:
    # One job id per team: a burst of contract changes while a sync waits in RQ makes one sync. A manual retry of
    # rejected accounts gets its own id so a plain pending sync does not swallow it; the team lock serialises both.
    job_id = f"family-doctor-chat-{team_id}" + ("-retry" if retry_rejected else "")
    kwargs: dict[str, Any] = {"retry_rejected": retry_rejected} if retry_rejected else {}
    if on is not None:
        kwargs["on"] = on.isoformat()
    get_queue().enqueue(sync_team_chat, team_id, job_id=job_id, retries=3, **kwargs)


def sweep_team_chats(on: str | None = None) -> int:
    """Daily: queue a sync of every team out of step (contracts that passed their end, anything a failed sync left
    behind). `on` (ISO date) is the day to judge contracts by, today by default. Returns the teams queued."""
    day = date.fromisoformat(on) if on else service.today()
    teams = teams_out_of_step(db.session(), day)
    for team_id in teams:
        _enqueue(team_id, on=day if on else None)
    db.session().rollback()  # end the read transaction
    return len(teams)


# -- the sync -----------------------------------------------------------------------------------------------------


def _lock_key(team_id: int) -> int:
    digest = hashlib.blake2b(f"family_doctor_chat:{team_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def _team_lock(session: orm.Session, team_id: int) -> Iterator[None]:
    """Serialise syncs of one team. PostgreSQL: a session-level advisory lock on a connection of its own — a row
    lock (SELECT … FOR UPDATE) would end at the sync's first progress commit, and would block its own inserts of
    `ChatMember` rows (their foreign key takes a share lock on the chat row). A second sync waits, then sees what
    the first did. SQLite admits one writer, and its in-process queue runs one job at a time."""
    engine = session.get_bind()
    if engine.dialect.name != "postgresql":
        yield
        return
    conn = engine.connect()
    try:
        conn.execute(sa.select(sa.func.pg_advisory_lock(_lock_key(team_id))))
        conn.commit()
        yield
    finally:
        try:
            conn.execute(sa.select(sa.func.pg_advisory_unlock(_lock_key(team_id))))
            conn.commit()
        except sa.exc.DBAPIError:
            conn.invalidate()  # never hand a connection that may still hold the lock back to the pool
        conn.close()


def sync_team_chat(team_id: int, on: str | None = None, retry_rejected: bool = False) -> dict[str, Any]:
    """The job: create the team's group if needed and make its members what they should be. Returns counts.

    DingTalk errors: throttling and transient failures (after the gateway's own retries) are recorded and raised,
    so the queue runs the job again and it resumes from the committed rows; anything else (unknown template,
    permissions, quota) is recorded in `TeamChat.last_error` and not raised — a retry minutes later would meet the
    same answer; the daily sweep tries again, and an administrator sees the error on the team's chat."""
    session = db.session()
    day = date.fromisoformat(on) if on else service.today()
    result = {"team_id": team_id, "created": False, "added": 0, "removed": 0, "rejected": 0, "calls": 0}
    with _team_lock(session, team_id):
        try:
            _sync(session, team_id, day, retry_rejected, result)
        except DingTalkError as exc:
            session.rollback()
            log.warning(
                "team chat sync failed", extra={"code": exc.code, "api": exc.api, "result": {"team_id": team_id}}
            )
            chat = session.get(TeamChat, team_id)
            if chat is not None:
                chat.last_error = f"钉钉接口出错（{exc.code}）：{exc.message}"[:300]
                session.commit()
            if isinstance(exc, ThrottledError | TransientError):
                raise
            result["error"] = exc.code
        finally:
            session.rollback()
    log.info("team chat synced", extra={"result": result})
    return result


def _sync(session: orm.Session, team_id: int, day: date, retry_rejected: bool, result: dict[str, Any]) -> None:
    row = session.execute(
        sa.select(FamilyDoctorTeam.name, OrgNode.name)
        .join(OrgNode, OrgNode.id == FamilyDoctorTeam.institution_id)
        .where(FamilyDoctorTeam.id == team_id)
    ).first()
    if row is None:
        return
    team_name, institution_name = row
    chat = session.get(TeamChat, team_id, populate_existing=True)
    if chat is None:
        chat = TeamChat(team_id=team_id)
        session.add(chat)
        session.commit()

    for round_ in range(MAX_ROUNDS):
        staff, residents = desired_members(session, team_id, day)
        want = {u: "staff" for u in staff} | {u: "resident" for u in residents}
        if chat.open_conversation_id is None:
            if not staff:
                _finish(session, chat, NO_STAFF)
                return
            template = current_app.config["SETTINGS"].dingtalk.scene_group_template_id
            if not template:
                _finish(session, chat, NO_TEMPLATE)
                return
            # Staff only at creation: a resident account DingTalk rejects would fail the whole create.
            group = groups.create_scene_group(
                f"{institution_name}·{team_name}签约居民群",
                staff[0],
                staff,
                template_id=template,
                uuid=_group_uuid(chat),
            )
            result["calls"] += 1
            result["created"] = True
            chat.open_conversation_id, chat.chat_id, chat.owner_userid = (
                group.open_conversation_id,
                group.chat_id,
                staff[0],
            )
            rows = _rows(session, team_id)
            _remember(session, team_id, rows, staff, "staff")
            session.commit()
        rows = _rows(session, team_id)

        if staff and chat.owner_userid not in staff:
            # The owner left the team: hand the group over (to a member of it) before they can be removed.
            if staff[0] not in rows or rows[staff[0]].kind == "rejected":
                groups.add_group_members(chat.open_conversation_id, [staff[0]])
                result["calls"] += 1
                _remember(session, team_id, rows, [staff[0]], "staff")
                session.commit()
            groups.set_group_owner(chat.open_conversation_id, staff[0])
            result["calls"] += 1
            chat.owner_userid = staff[0]
            session.commit()

        retry = retry_rejected and round_ == 0
        to_add = [u for u in want if u not in rows or (retry and rows[u].kind == "rejected")]
        extra = [u for u, r in rows.items() if u not in want and u != chat.owner_userid]
        gone_rejected = [u for u in extra if rows[u].kind == "rejected"]
        to_remove = [u for u in extra if rows[u].kind != "rejected"]
        for userid in gone_rejected:  # never in the group: just forget them
            session.delete(rows.pop(userid))
        for userid, kind in want.items():  # a resident who joined the staff, or back
            if userid in rows and rows[userid].kind not in (kind, "rejected"):
                rows[userid].kind = kind
        session.commit()
        if not to_add and not to_remove:
            break
        for start in range(0, len(to_add), groups.ADD_CHUNK):
            _add(session, chat, rows, to_add[start : start + groups.ADD_CHUNK], want, result)
        for start in range(0, len(to_remove), groups.ADD_CHUNK):
            _remove(session, chat, rows, to_remove[start : start + groups.ADD_CHUNK], result)

    rows = _rows(session, team_id)
    rejected = sum(1 for r in rows.values() if r.kind == "rejected")
    result["rejected"] = rejected
    _finish(session, chat, f"{rejected} 个钉钉账号被钉钉拒绝（如账号不存在），未能入群" if rejected else None)


def _group_uuid(chat: TeamChat) -> str:
    """Stable for this chat row (a re-run after a lost reply finds the same group), and not reused by another
    database whose team got the same id (a restored or re-created one): DingTalk would hand back the old group."""
    return f"family-doctor-team-{chat.team_id}-{int(chat.created_at.timestamp() * 1000)}"


def _rows(session: orm.Session, team_id: int) -> dict[str, ChatMember]:
    return {r.userid: r for r in session.scalars(sa.select(ChatMember).where(ChatMember.team_id == team_id))}


def _remember(
    session: orm.Session, team_id: int, rows: dict[str, ChatMember], userids: Sequence[str], kind: str
) -> None:
    for userid in userids:
        if userid in rows:
            rows[userid].kind = kind
        else:
            rows[userid] = ChatMember(team_id=team_id, userid=userid, kind=kind)
            session.add(rows[userid])


def _add(
    session: orm.Session,
    chat: TeamChat,
    rows: dict[str, ChatMember],
    chunk: list[str],
    want: dict[str, str],
    result: dict[str, Any],
) -> None:
    """Add a chunk; when DingTalk rejects a userid in it, halve the chunk until the rejected ones are alone."""
    try:
        groups.add_group_members(chat.open_conversation_id, chunk)
    except DingTalkError as exc:
        result["calls"] += 1
        if exc.code not in USER_REJECTED:
            raise
        if len(chunk) == 1:
            _remember(session, chat.team_id, rows, chunk, "rejected")
            session.commit()
            return
        middle = len(chunk) // 2
        _add(session, chat, rows, chunk[:middle], want, result)
        _add(session, chat, rows, chunk[middle:], want, result)
        return
    result["calls"] += 1
    result["added"] += len(chunk)
    for userid in chunk:
        _remember(session, chat.team_id, rows, [userid], want[userid])
    session.commit()


def _remove(
    session: orm.Session, chat: TeamChat, rows: dict[str, ChatMember], chunk: list[str], result: dict[str, Any]
) -> None:
    """Remove a chunk; a userid DingTalk no longer knows cannot be in the group, so its row is simply forgotten."""
    try:
        groups.remove_group_members(chat.open_conversation_id, chunk)
    except DingTalkError as exc:
        result["calls"] += 1
        if exc.code not in USER_REJECTED:
            raise
        if len(chunk) == 1:
            session.delete(rows.pop(chunk[0]))
            session.commit()
            return
        middle = len(chunk) // 2
        _remove(session, chat, rows, chunk[:middle], result)
        _remove(session, chat, rows, chunk[middle:], result)
        return
    result["calls"] += 1
    result["removed"] += len(chunk)
    for userid in chunk:
        session.delete(rows.pop(userid))
    session.commit()


def _finish(session: orm.Session, chat: TeamChat, error: str | None) -> None:
    chat.synced_at = utcnow()
    chat.last_error = error
    session.commit()


# -- API ----------------------------------------------------------------------------------------------------------


def chat_view(principal: Principal, team_id: int, session: orm.Session | None = None) -> dict[str, Any]:
    """The team's chat as the API shows it (counts only: no resident is named)."""
    session = session or db.session()
    service._visible_team(principal, session, team_id, field=None)
    chat = session.get(TeamChat, team_id)
    counts = dict(
        session.execute(
            sa.select(ChatMember.kind, sa.func.count()).where(ChatMember.team_id == team_id).group_by(ChatMember.kind)
        ).all()
    )
    return {
        "team_id": team_id,
        "open_conversation_id": chat.open_conversation_id if chat else None,
        "chat_id": chat.chat_id if chat else None,
        "owner_userid": chat.owner_userid if chat else None,
        "staff_count": counts.get("staff", 0),
        "resident_count": counts.get("resident", 0),
        "rejected_count": counts.get("rejected", 0),
        "synced_at": chat.synced_at if chat else None,
        "last_error": chat.last_error if chat else None,
    }


def request_sync(principal: Principal, team_id: int, session: orm.Session | None = None) -> dict[str, Any]:
    """Queue a sync of the team's chat now (managers of the team), retrying accounts DingTalk rejected before."""
    session = session or db.session()
    _, institution = service._managed_team(principal, session, team_id)
    audit.record(
        principal,
        "family_doctor.team.chat_sync",
        resource_type="family_doctor_team",
        resource_id=team_id,
        node_id=institution.id,
        session=session,
    )
    schedule_sync(session, team_id, retry_rejected=True)
    session.commit()
    return {"team_id": team_id, "queued": True}
