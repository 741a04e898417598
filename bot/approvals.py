"""Approvals for administrators: "ask these people to approve this, call me back with the result".

    from bot.approvals import request_approval

    request_approval(
        key=f"settlement:{settlement.id}",
        title="11月医共体结算单",
        originator_userid=clerk,
        approvers=[director, finance_head],
        mode="sequence",
        form=[("结算周期", "2026年11月"), ("金额", "¥128,000")],
        callback="mini_apps.compensation.service:settlement_decided",
        context={"settlement_id": settlement.id},
    )
    db.commit()  # the caller's own transaction; nothing happens if it rolls back

    def settlement_decided(outcome: ApprovalOutcome) -> None:  # called once: agree | refuse | terminated | failed
        ...  # change rows through workbench.db.session(); do not commit, the bot commits with its own mark

Two ways to ask, chosen when the request is made:

- **workflow** (a process code is given, or configured as `DINGTALK_APPROVAL_PROCESS_CODE`): after the caller's
  commit a job starts a DingTalk OA process instance (`POST /v1.0/workflow/processInstances`,
  reference/dingtalk.md §6) with the approvers as explicit nodes. `bpms_instance_change`/`bpms_task_change`
  events finish it; an event of a type not documented (terminate, cancel, redirect …) makes the bot read the
  instance instead of guessing; `poll_approvals` reads instances no event has touched for a while, which catches
  lost events.
- **card** (no process code): an approval card (同意/拒绝) to each approver's robot chat, created in the caller's own
  transaction through the outbox. A click is claimed once per card by `bot.cards.handle_click`, then recorded here
  under a row lock, so a double tap, a replayed callback or two approvers at once decide once.

Either way the approval's final state is set by one conditional UPDATE and the caller's callback runs in a job, in
the transaction that sets `callback_at`, so its database changes and the mark commit together: once per approval,
whichever of events, reads, clicks and workers got there.

`mode`: "any" (one decision settles it: DingTalk `OR`), "all" (everyone must agree, one refusal settles it:
`AND`), "sequence" (one after another: a node per approver; cards go to the next approver after each agreement).

DingTalk titles an OA instance itself ("<发起人>提交的<模板名>") and checks `form` names against the template's
labels, so with a process code `form` must use the template's labels; `title` is shown on cards and to
administrators.

Starting an instance is not idempotent at DingTalk (no request id): a crash between the call and its record
leaves the row `pending` with `start_claimed_at` set, which the poller turns into `failed` ("outcome unknown",
callback `failed`) after `START_LEASE` rather than start a second instance approvers would see twice.
"""

from __future__ import annotations

import importlib
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy import event, orm

from bot import cards
from bot.models import APPROVAL_MODES, FINAL_APPROVAL_STATES, BotApproval, BotCard
from workbench.db import paginate, session, utcnow
from workbench.dingtalk import get_gateway
from workbench.dingtalk.errors import DingTalkError, ThrottledError, TransientError
from workbench.dingtalk.events import Event, EventRouter
from workbench.errors import ApiError
from workbench.queue import get_queue

log = logging.getLogger(__name__)

POLL_SECONDS = 300  # how often the poller looks for approvals to read
STALE_AFTER = timedelta(hours=1)  # an open instance no event touched for this long is read (one metered call)
START_LEASE = timedelta(minutes=5)  # a start call in flight for longer was interrupted
CARD_PREFIX = "bot-approval:"  # out_track_id of approval cards: bot-approval:<id>:<approver index>:<random>
MAX_APPROVERS = 20  # DingTalk: at most 20 approver nodes
MAX_FORM_ITEMS = 150
MAX_VALUE = 65535
STATE_OF_RESULT = {"agree": "approved", "refuse": "refused", "terminated": "terminated", "failed": "failed"}
RESULT_TEXT = {"agree": "已同意", "refuse": "已拒绝", "terminated": "已撤销", "failed": "发起失败"}
_PENDING_STARTS = "bot.approvals.starts"
_PENDING_CALLBACKS = "bot.approvals.callbacks"
_PENDING_CLOSES = "bot.approvals.closes"


@dataclass(frozen=True)
class ApprovalOutcome:
    """What the caller's callback receives, once."""

    approval_id: int
    key: str
    result: str  # agree | refuse | terminated | failed
    context: Mapping[str, Any]
    decisions: Sequence[Mapping[str, Any]]  # {userid, result, at, via}, in the order the bot saw them
    instance_id: str | None
    error: str | None = None  # why it failed, for `failed`


# -- requesting ---------------------------------------------------------------------------------------------------


def request_approval(
    *,
    key: str,
    title: str,
    originator_userid: str,
    approvers: Sequence[str],
    form: Sequence[tuple[str, str]],
    callback: str,
    context: Mapping[str, Any] | None = None,
    mode: str = "any",
    process_code: str | None = None,
    cards_only: bool = False,
) -> BotApproval:
    """Add an approval request in the caller's transaction (`workbench.db.session()`); it starts once the caller
    commits.

    The same `key` again returns the first request (whatever its other arguments). `callback` is a
    "module:function" path, checked now so that a typo fails the caller rather than the last step. `cards_only`
    asks by approval card even when an OA template is configured: for forms whose lines vary (one per indicator
    reported), which a template's fixed labels cannot take."""
    db = session()
    existing = db.scalar(sa.select(BotApproval).where(BotApproval.idempotency_key == key))
    if existing is not None:
        return existing
    approvers = list(dict.fromkeys(approvers))
    form_items = [[str(name), str(value)] for name, value in form]
    _validate(key, title, originator_userid, approvers, form_items, mode, callback)
    process_code = None if cards_only else process_code or configured_process_code()
    row = BotApproval(
        idempotency_key=key,
        title=title,
        originator_userid=originator_userid,
        approvers=approvers,
        mode=mode,
        form=form_items,
        callback=callback,
        context=dict(context or {}),
        channel="workflow" if process_code else "card",
        process_code=process_code,
        state="pending",
        decisions=[],
        attempts=0,
    )
    db.add(row)
    if row.channel == "workflow":
        db.flush()
        db.info.setdefault(_PENDING_STARTS, set()).add(row.id)
    else:
        # Cards are rows in the same transaction (the outbox delivers them after commit): nothing to start later.
        db.flush()
        for index in _card_recipients(row):
            _send_card(row, index)
        row.state, row.started_at, row.checked_at = "started", utcnow(), utcnow()
    return row


def configured_process_code() -> str | None:
    """The OA template to use when the caller names none (`DINGTALK_APPROVAL_PROCESS_CODE`)."""
    return current_app.config["SETTINGS"].dingtalk.approval_process_code


def _validate(
    key: str, title: str, originator: str, approvers: list[str], form: list[list[str]], mode: str, callback: str
) -> None:
    if not key or len(key) > 128:
        raise ApiError("invalid_idempotency_key", "key 必填且不超过128个字符", field="key")
    if not title or len(title) > 200:
        raise ApiError("invalid_title", "title 必填且不超过200个字符", field="title")
    if not originator:
        raise ApiError("invalid_originator", "originator_userid 必填", field="originator_userid")
    if not approvers or len(approvers) > MAX_APPROVERS or not all(isinstance(u, str) and u for u in approvers):
        raise ApiError("invalid_approvers", f"approvers 须为1到{MAX_APPROVERS}个 userid", field="approvers")
    if mode not in APPROVAL_MODES:
        raise ApiError("invalid_mode", f"mode 只能是 {', '.join(APPROVAL_MODES)}", field="mode")
    if len(form) > MAX_FORM_ITEMS or any(not name or len(value) > MAX_VALUE for name, value in form):
        raise ApiError(
            "invalid_form", f"form 最多{MAX_FORM_ITEMS}项，每项须有名称且值不超过{MAX_VALUE}字符", field="form"
        )
    try:
        resolve_callback(callback)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ApiError("invalid_callback", f"callback 无法导入: {callback}", field="callback") from exc


def resolve_callback(path: str) -> Callable[[ApprovalOutcome], object]:
    module, sep, name = path.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"callback must be 'module:function', got {path!r}")
    func = getattr(importlib.import_module(module), name)
    if not callable(func):
        raise ValueError(f"{path} is not callable")
    return func


@event.listens_for(orm.Session, "after_commit")
def _queue_jobs(db: orm.Session) -> None:
    """Start instances and run callbacks only once the rows that ask for it are committed."""
    for approval_id in sorted(db.info.pop(_PENDING_STARTS, None) or ()):
        get_queue().enqueue(start_approval, approval_id, job_id=f"bot-approval-start-{approval_id}")
    for approval_id in sorted(db.info.pop(_PENDING_CALLBACKS, None) or ()):
        get_queue().enqueue(run_callback, approval_id, job_id=f"bot-approval-callback-{approval_id}")
    for approval_id in sorted(db.info.pop(_PENDING_CLOSES, None) or ()):
        get_queue().enqueue(close_cards, approval_id, job_id=f"bot-approval-cards-{approval_id}")


@event.listens_for(orm.Session, "after_rollback")
def _forget_jobs(db: orm.Session) -> None:
    db.info.pop(_PENDING_STARTS, None)
    db.info.pop(_PENDING_CALLBACKS, None)
    db.info.pop(_PENDING_CLOSES, None)


# -- workflow: starting, events, reading ------------------------------------------------------------------------


def start_approval(approval_id: int) -> None:
    """Job: start the OA process instance of a committed workflow request (claimed, so two workers start one)."""
    db = session()
    claimed = db.execute(
        sa.update(BotApproval)
        .where(
            BotApproval.id == approval_id,
            BotApproval.state == "pending",
            BotApproval.channel == "workflow",
            BotApproval.start_claimed_at.is_(None),
        )
        .values(start_claimed_at=utcnow(), attempts=BotApproval.attempts + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.commit()
    if not claimed:
        return
    row = db.get(BotApproval, approval_id, populate_existing=True)
    try:
        body = get_gateway().api("workflow_1_0", "start_process_instance", _start_request(row))
    except (ThrottledError, TransientError) as exc:
        # DingTalk took nothing: release the claim and let the job queue try again.
        row.start_claimed_at, row.last_error = None, str(exc)[:500]
        db.commit()
        raise
    except DingTalkError as exc:
        _finish(db, row, "failed", error=str(exc))
        db.commit()
        log.warning("approval not started", extra={"approval": approval_id, "status": exc.code})
        return
    now = utcnow()
    row.instance_id, row.state, row.started_at, row.checked_at, row.last_error = (
        body.instance_id,
        "started",
        now,
        now,
        None,
    )
    db.commit()
    log.info("approval started", extra={"approval": approval_id})


def _start_request(row: BotApproval):
    from alibabacloud_dingtalk.workflow_1_0 import models as wf

    if row.mode == "sequence":
        nodes = [("NONE", [userid]) for userid in row.approvers]
    elif len(row.approvers) == 1:
        nodes = [("NONE", list(row.approvers))]
    else:
        nodes = [("OR" if row.mode == "any" else "AND", list(row.approvers))]
    agent_id = current_app.config["SETTINGS"].dingtalk.agent_id
    return wf.StartProcessInstanceRequest(
        process_code=row.process_code,
        originator_user_id=row.originator_userid,
        microapp_agent_id=int(agent_id) if str(agent_id).isdigit() else None,
        approvers=[wf.StartProcessInstanceRequestApprovers(action_type=a, user_ids=u) for a, u in nodes],
        form_component_values=[
            wf.StartProcessInstanceRequestFormComponentValues(name=name, value=value) for name, value in row.form
        ],
    )


def register(router: EventRouter) -> None:
    router.on("bpms_instance_change")(on_instance_change)
    router.on("bpms_task_change")(on_task_change)


def _locked_by_instance(db: orm.Session, instance_id: object) -> BotApproval | None:
    if not instance_id:
        return None
    return db.scalar(
        sa.select(BotApproval)
        .where(BotApproval.instance_id == str(instance_id))
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def on_instance_change(event: Event) -> None:
    """`bpms_instance_change`: `finish` carries the result; any other type but `start` is read, not guessed."""
    db = session()
    row = _locked_by_instance(db, event.data.get("processInstanceId"))
    if row is None or row.state in FINAL_APPROVAL_STATES:
        db.rollback()  # not ours (another app's approval), or already settled: a duplicate or late event
        return
    kind, result = str(event.data.get("type") or ""), str(event.data.get("result") or "").lower()
    row.checked_at = utcnow()
    if kind == "finish" and result in ("agree", "refuse"):
        _finish(db, row, result)
    elif kind != "start":
        _apply_instance(db, row, read_instance(row.instance_id))
    db.commit()


def on_task_change(event: Event) -> None:
    """`bpms_task_change`: kept as a decision for the administrators' view; the instance event settles it."""
    db = session()
    row = _locked_by_instance(db, event.data.get("processInstanceId"))
    if row is None or row.state in FINAL_APPROVAL_STATES:
        db.rollback()
        return
    kind, result = str(event.data.get("type") or ""), str(event.data.get("result") or "").lower()
    row.checked_at = utcnow()
    if kind == "finish" and result in ("agree", "refuse"):
        _add_decision(row, str(event.data.get("staffId") or ""), result, "event", event.data.get("taskId"))
    elif kind not in ("start", "finish"):
        _apply_instance(db, row, read_instance(row.instance_id))
    db.commit()


def read_instance(instance_id: str | None) -> Any:
    """`GET /v1.0/workflow/processInstances` (metered): the instance as DingTalk has it now."""
    from alibabacloud_dingtalk.workflow_1_0 import models as wf

    body = get_gateway().api(
        "workflow_1_0", "get_process_instance", wf.GetProcessInstanceRequest(process_instance_id=instance_id)
    )
    return body.result


def _apply_instance(db: orm.Session, row: BotApproval, instance: Any) -> None:
    """Make the row agree with a read instance: approved ⇔ COMPLETED and agree (§6); TERMINATED/CANCELED ended."""
    row.checked_at = utcnow()
    if instance is None:
        return
    for task in instance.tasks or []:
        result = str(task.result or "").lower()
        if task.status == "COMPLETED" and result in ("agree", "refuse"):
            _add_decision(row, str(task.user_id or ""), result, "read", task.task_id)
    status, result = str(instance.status or "").upper(), str(instance.result or "").lower()
    if status == "COMPLETED" and result in ("agree", "refuse"):
        _finish(db, row, result)
    elif status in ("TERMINATED", "CANCELED"):
        _finish(db, row, "terminated")


def _add_decision(row: BotApproval, userid: str, result: str, via: str, task_id: object = None) -> bool:
    """Record one person's decision once (by task id when DingTalk gave one, else by person)."""
    task = str(task_id) if task_id is not None else None
    for seen in row.decisions:
        if (task is not None and seen.get("task_id") == task) or (task is None and seen["userid"] == userid):
            return False
    entry = {"userid": userid, "result": result, "at": utcnow().isoformat(), "via": via}
    if task is not None:
        entry["task_id"] = task
    row.decisions = [*row.decisions, entry]
    return True


# -- finishing and calling back -----------------------------------------------------------------------------------


def _finish(db: orm.Session, row: BotApproval, result: str, *, error: str | None = None) -> bool:
    """Set the final state once (a conditional UPDATE) and queue the callback for after the commit."""
    now = utcnow()
    values: dict[str, Any] = {"state": STATE_OF_RESULT[result], "result": result, "finished_at": now, "updated_at": now}
    if error:
        values["last_error"] = error[:500]
    # The session autoflushes the row's pending changes (decisions, checked_at) before this UPDATE.
    done = db.execute(
        sa.update(BotApproval)
        .where(BotApproval.id == row.id, BotApproval.state.in_(("pending", "started")))
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.refresh(row)
    if done:
        db.info.setdefault(_PENDING_CALLBACKS, set()).add(row.id)
        if row.channel == "card":
            db.info.setdefault(_PENDING_CLOSES, set()).add(row.id)
        log.info("approval finished", extra={"approval": row.id, "result": result})
    return bool(done)


def run_callback(approval_id: int) -> None:
    """Job: call the caller back, once. The claim (`callback_at`) and the callback's changes commit together;
    if the callback raises, both roll back and the job queue (then the poller) tries again."""
    db = session()
    claimed = db.execute(
        sa.update(BotApproval)
        .where(
            BotApproval.id == approval_id,
            BotApproval.state.in_(FINAL_APPROVAL_STATES),
            BotApproval.callback_at.is_(None),
        )
        .values(callback_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if not claimed:
        db.rollback()
        return
    row = db.get(BotApproval, approval_id, populate_existing=True)
    outcome = ApprovalOutcome(
        approval_id=row.id,
        key=row.idempotency_key,
        result=row.result or "failed",
        context=dict(row.context),
        decisions=[dict(d) for d in row.decisions],
        instance_id=row.instance_id,
        error=row.last_error if row.result == "failed" else None,
    )
    try:
        resolve_callback(row.callback)(outcome)
        db.commit()
    except BaseException:
        db.rollback()
        log.exception("approval callback failed", extra={"approval": approval_id})
        raise


# -- cards ---------------------------------------------------------------------------------------------------------


def _card_recipients(row: BotApproval) -> list[int]:
    """Indexes of the approvers who get a card now: everyone, or in a sequence the first not yet agreed."""
    if row.mode != "sequence":
        return list(range(len(row.approvers)))
    agreed = {d["userid"] for d in row.decisions if d["result"] == "agree"}
    pending = [i for i, userid in enumerate(row.approvers) if userid not in agreed]
    return pending[:1]


SUMMARY_BYTES = 1000  # DingTalk takes at most 1,024 bytes in one card parameter (the sandbox enforces it too)


def card_summary(form: Sequence[Sequence[str]], limit: int = SUMMARY_BYTES) -> str:
    """The form as the card's summary: as many lines as fit in one card parameter, then how many were left out
    (the whole form stays on the approval row and in the app's own pages). Over the limit DingTalk refuses the card
    and the outbox would retry it for ever."""
    lines = [f"{name}：{value}" for name, value in form]
    for shown in range(len(lines), 0, -1):
        tail = [f"……其余 {len(lines) - shown} 项见工作台"] if shown < len(lines) else []
        text = "\n".join(lines[:shown] + tail)
        if len(text.encode()) <= limit:
            return text
    return f"共 {len(lines)} 项，详见工作台"


def _send_card(row: BotApproval, index: int) -> None:
    summary = card_summary(row.form)
    cards.send_card(
        cards.APPROVAL,
        {"title": row.title, "summary": summary, "status": "待审批", "acted_by": ""},
        # The random tail keeps the id unique at DingTalk across databases (a restored backup, a staging copy
        # sharing the DingTalk org), where a reused outTrackId would be taken for the earlier card.
        out_track_id=f"{CARD_PREFIX}{row.id}:{index}:{uuid.uuid4().hex[:16]}",
        userid=row.approvers[index],
        priority="high",
    )


def close_cards(approval_id: int) -> int:
    """Job: show the result on the cards nobody acted on (the other approvers' in "any" mode), claimed like a click
    so that a late tap gets the closed card back instead of deciding. One metered update per card; returns how
    many were closed."""
    db = session()
    row = db.get(BotApproval, approval_id)
    if row is None or row.state not in FINAL_APPROVAL_STATES:
        return 0
    status = f"审批已结束（{RESULT_TEXT[row.result or 'failed']}）"
    tracks = db.scalars(
        sa.select(BotCard.out_track_id).where(
            BotCard.out_track_id.like(f"{CARD_PREFIX}{approval_id}:%"), BotCard.acted_by.is_(None)
        )
    ).all()
    closed = 0
    for track in tracks:
        claimed = db.execute(
            sa.update(BotCard)
            .where(BotCard.out_track_id == track, BotCard.acted_by.is_(None))
            .values(acted_by="", action_id="approval.closed", acted_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount
        db.commit()
        if not claimed:
            continue
        try:
            cards.update_card(track, {"status": status})
            closed += 1
        except DingTalkError as exc:
            # Not delivered yet, or gone: the card row says closed, so a click on it changes nothing.
            log.info("approval card not updated", extra={"approval": approval_id, "status": exc.code})
    return closed


def approval_of_card(out_track_id: str) -> tuple[int, int] | None:
    """(approval id, approver index) of an approval card, None for other cards that use the approval template."""
    if not out_track_id.startswith(CARD_PREFIX):
        return None
    try:
        approval_id, index, _tail = out_track_id.removeprefix(CARD_PREFIX).split(":")
        return int(approval_id), int(index)
    except ValueError:
        return None


def decide_by_card(click: cards.CardClick, result: str) -> dict[str, str]:
    """Record an approver's 同意/拒绝 from their card, inside the click's transaction (the card is already claimed
    for this click, so a double tap or a replay never gets here twice). Returns the card parameters to show."""
    ids = approval_of_card(click.out_track_id)
    shown = {"status": RESULT_TEXT[result], "acted_by": click.userid}
    if ids is None:
        return shown
    db = session()
    row = db.get(BotApproval, ids[0], with_for_update=True, populate_existing=True)
    if row is None:
        return shown
    if ids[1] >= len(row.approvers) or row.approvers[ids[1]] != click.userid:
        # A forwarded card: only the approver it was sent to may decide (raising leaves the card open for them).
        raise ApiError("not_approver", "只有审批人本人可以处理此审批", status=403)
    if row.state in FINAL_APPROVAL_STATES:
        return {"status": f"审批已结束（{RESULT_TEXT[row.result or 'failed']}）", "acted_by": ""}
    _add_decision(row, click.userid, result, "card")
    row.checked_at = utcnow()
    final = outcome_of(row.mode, row.approvers, row.decisions)
    if final is not None:
        _finish(db, row, final)
    elif row.mode == "sequence":
        for index in _card_recipients(row):
            _send_card(row, index)
    return shown


def outcome_of(mode: str, approvers: Sequence[str], decisions: Sequence[Mapping[str, Any]]) -> str | None:
    """The result the decisions so far settle, or None: one refusal settles every mode; "any" settles on the
    first decision, "all" and "sequence" once everyone agreed."""
    results = {d["userid"]: d["result"] for d in decisions if d["userid"] in approvers}
    if "refuse" in results.values():
        return "refuse"
    if mode == "any":
        return "agree" if results else None
    return "agree" if all(userid in results for userid in approvers) else None


# -- the safety net -----------------------------------------------------------------------------------------------


def poll_approvals(stale_after: timedelta = STALE_AFTER, start_lease: timedelta = START_LEASE) -> dict:
    """Periodic job: read open instances no event touched for `stale_after` (lost events), settle interrupted
    starts, and re-queue starts and callbacks whose jobs were lost (a crash between commit and enqueue)."""
    db = session()
    now = utcnow()
    counts = {"read": 0, "finished": 0, "interrupted": 0, "starts": 0, "callbacks": 0}
    stale = db.scalars(
        sa.select(BotApproval.id)
        .where(
            BotApproval.state == "started",
            BotApproval.channel == "workflow",
            sa.or_(BotApproval.checked_at.is_(None), BotApproval.checked_at <= now - stale_after),
        )
        .order_by(BotApproval.checked_at, BotApproval.id)
        .limit(100)
    ).all()
    for approval_id in stale:
        row = db.get(BotApproval, approval_id, with_for_update=True, populate_existing=True)
        if row is None or row.state != "started":
            db.rollback()
            continue
        try:
            instance = read_instance(row.instance_id)
        except DingTalkError as exc:
            db.rollback()
            log.warning("approval instance not read", extra={"approval": approval_id, "status": exc.code})
            continue
        _apply_instance(db, row, instance)
        counts["read"] += 1
        counts["finished"] += row.state in FINAL_APPROVAL_STATES
        db.commit()
    interrupted = db.scalars(
        sa.select(BotApproval)
        .where(BotApproval.state == "pending", BotApproval.start_claimed_at <= now - start_lease)
        .with_for_update(skip_locked=True)
    ).all()
    for row in interrupted:
        _finish(db, row, "failed", error="outcome_unknown: 发起审批时中断，无法确认钉钉是否已创建审批实例")
        counts["interrupted"] += 1
    db.commit()
    lost_starts = db.scalars(
        sa.select(BotApproval.id).where(
            BotApproval.state == "pending",
            BotApproval.channel == "workflow",
            BotApproval.start_claimed_at.is_(None),
            BotApproval.created_at <= now - timedelta(minutes=1),
        )
    ).all()
    lost_callbacks = db.scalars(
        sa.select(BotApproval.id).where(
            BotApproval.state.in_(FINAL_APPROVAL_STATES),
            BotApproval.callback_at.is_(None),
            BotApproval.finished_at <= now - timedelta(minutes=1),
        )
    ).all()
    db.commit()
    for approval_id in lost_starts:
        get_queue().enqueue(start_approval, approval_id, job_id=f"bot-approval-start-{approval_id}")
    for approval_id in lost_callbacks:
        get_queue().enqueue(run_callback, approval_id, job_id=f"bot-approval-callback-{approval_id}")
    counts["starts"], counts["callbacks"] = len(lost_starts), len(lost_callbacks)
    return counts


# -- administration -----------------------------------------------------------------------------------------------


def list_approvals(state: str | None, page: int, page_size: int) -> dict:
    query = sa.select(BotApproval)
    if state:
        query = query.where(BotApproval.state == state)
    items, total = paginate(query.order_by(BotApproval.id.desc()), page, page_size)
    return {"items": items, "total": total, "page": page, "page_size": page_size}


def get_approval(approval_id: int) -> BotApproval:
    row = session().get(BotApproval, approval_id)
    if row is None:
        raise ApiError("not_found", "审批不存在", status=404)
    return row
