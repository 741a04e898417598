"""Interactive cards: templates declared in code, sent through the outbox, updated in place, and the actions
people take on them handled once, bolt-style (`@card_action("referral.accept")`).

A click reaches `handle_click` through `POST /bot/card/callback` (signed with `x-ddpaas-signature`) or over Stream
(`bot.stream_cards`). The first click to claim the card (a conditional UPDATE on `bot_cards.acted_by`) runs the
handler and answers with the card's new data; every later tap, a second person's or a replayed callback only
gets the card as it now is. The answer is computed from the database alone, well inside DingTalk's 2 seconds;
handlers queue slow work as jobs that call `update_card` later. The approval card's buttons belong to
`bot.approvals` (`decide_by_card`) when the card is an approval's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app

from bot import outbox
from bot.models import BotCard, OutboxMessage
from workbench.db import session, utcnow
from workbench.dingtalk import get_gateway
from workbench.errors import ApiError

log = logging.getLogger(__name__)

CALLBACK_ROUTE_KEY = "workbench"
CALLBACK_TYPES = ("HTTP", "STREAM")
SIGNATURE_TOLERANCE_MS = 3600 * 1000


@dataclass(frozen=True)
class Button:
    action_id: str
    title: str


@dataclass(frozen=True)
class CardTemplate:
    """A card as published in DingTalk's card platform: its template id, the parameters it shows, its buttons."""

    name: str
    template_id: str
    params: tuple[str, ...]
    buttons: tuple[Button, ...] = ()


@dataclass(frozen=True)
class CardClick:
    """What a handler gets: who pressed which button on which card, with the card's current data."""

    out_track_id: str
    action_id: str
    userid: str
    params: Mapping[str, object]
    card_data: Mapping[str, str]


class KeepOpen(Exception):
    """Raised by a handler when the click decided nothing (not this person's to decide, a reason missing): the claim
    is undone, the card stays open for the next tap, and the clicker alone sees `changes` (a hint): they go back as
    `userPrivateData`, so on a group card the other members do not read a refusal meant for one person."""

    def __init__(self, changes: Mapping[str, str]) -> None:
        super().__init__("card kept open")
        self.changes = dict(changes)


TEMPLATES: dict[str, CardTemplate] = {}
HANDLERS: dict[str, Callable[[CardClick], Mapping[str, str]]] = {}


def declare_card(template: CardTemplate) -> CardTemplate:
    TEMPLATES[template.name] = template
    return template


def card_action(action_id: str) -> Callable:
    """Register the handler of a button: it returns the card parameters that change (strings)."""

    def register(func: Callable[[CardClick], Mapping[str, str]]) -> Callable[[CardClick], Mapping[str, str]]:
        HANDLERS[action_id] = func
        return func

    return register


APPROVAL = declare_card(
    CardTemplate(
        name="approval",
        template_id="tpl-approval",
        params=("title", "summary", "status", "acted_by"),
        buttons=(Button("approval.agree", "同意"), Button("approval.refuse", "拒绝")),
    )
)


# -- sending and updating -------------------------------------------------------------------------------------


def send_card(
    template: CardTemplate,
    data: Mapping[str, str],
    *,
    out_track_id: str,
    group: str | None = None,
    userid: str | None = None,
    priority: str = "normal",
    callback_type: str | None = None,
    at_userids: Mapping[str, str] | None = None,
    recipients: Sequence[str] | None = None,
) -> OutboxMessage:
    """Queue a card to a group (openConversationId) or one person (their robot chat), in the caller's transaction.

    `out_track_id` is the card's identity (≤64 characters, e.g. "referral:42:accept"): DingTalk refuses a second
    card with it, which is what makes re-delivery after a crash harmless. `callback_type` says how its clicks come
    back: "HTTP" (`POST /bot/card/callback`) or "STREAM" (the Stream worker, `bot.stream_cards`); by default
    `DINGTALK_CARD_CALLBACK_TYPE`.

    Group cards only: `at_userids` ({userid: name}) @-mentions people, and `recipients` makes the card visible to
    those userids alone (`imGroupOpenDeliverModel`, dingtalk.md §5.1) — how a message about one resident goes into
    a group without the group's other residents seeing it."""
    callback_type = (callback_type or current_app.config["SETTINGS"].dingtalk.card_callback_type).upper()
    if callback_type not in CALLBACK_TYPES:
        raise ApiError("invalid_callback_type", "callback_type 只能是 HTTP 或 STREAM", field="callback_type")
    if (group is None) == (userid is None):
        raise ApiError("invalid_target", "group 与 userid 必须且只能填写一个", field="group")
    if not out_track_id or len(out_track_id) > 64:
        raise ApiError("invalid_out_track_id", "out_track_id 必填且不超过64个字符", field="out_track_id")
    if group is None and (at_userids or recipients):
        raise ApiError("invalid_target", "只有群卡片可以 @ 成员或限定可见人", field="recipients")
    if at_userids is not None and not all(
        isinstance(u, str) and u and isinstance(n, str) for u, n in at_userids.items()
    ):
        raise ApiError("invalid_at_userids", "at_userids 须为 {userid: 姓名}", field="at_userids")
    if recipients is not None and not all(isinstance(u, str) and u for u in recipients):
        raise ApiError("invalid_recipients", "recipients 须为 userid 列表", field="recipients")
    unknown = set(data) - set(template.params)
    if unknown:
        raise ApiError("invalid_card_data", f"卡片参数不在模板中: {', '.join(sorted(unknown))}", field="data")
    card_data = {key: str(value) for key, value in data.items()}
    space = f"IM_GROUP.{group}" if group else f"IM_ROBOT.{userid}"
    payload = {
        "template_id": template.template_id,
        "card_data": card_data,
        "open_space_id": f"dtv1.card//{space}",
        "callback_type": callback_type,
    }
    if callback_type == "HTTP":
        payload["callback_route_key"] = CALLBACK_ROUTE_KEY
    if at_userids:
        payload["at_userids"] = dict(at_userids)
    if recipients:
        payload["recipients"] = list(dict.fromkeys(recipients))
    db = session()
    db.add(BotCard(out_track_id=out_track_id, template=template.name, data=card_data, version=1))
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return outbox.add_row(
        db,
        channel="card",
        target=payload["open_space_id"],
        payload=payload,
        digest=digest,
        idempotency_key=f"card:{out_track_id}",
        priority=priority,
        out_track_id=out_track_id,
    )


def update_card(out_track_id: str, data: Mapping[str, str]) -> None:
    """Change a delivered card in place (`PUT /v1.0/card/instances`, merged by key); for jobs, not click replies."""
    from alibabacloud_dingtalk.card_1_0 import models as card_models

    db = session()
    card = db.get(BotCard, out_track_id)
    if card is None:
        raise ApiError("not_found", "卡片不存在", status=404)
    changes = {key: str(value) for key, value in data.items()}
    card.data = {**card.data, **changes}
    card.version += 1
    db.commit()
    request = card_models.UpdateCardRequest(
        out_track_id=out_track_id,
        card_data=card_models.UpdateCardRequestCardData(card_param_map=changes),
        card_update_options=card_models.UpdateCardRequestCardUpdateOptions(update_card_data_by_key=True),
        user_id_type=1,
    )
    get_gateway().api("card_1_0", "update_card", request)


def refresh_card(out_track_id: str, shown: Mapping[str, str], want: Mapping[str, str], *, closed_action: str) -> bool:
    """Bring one card from what it `shown` to what it should show now (`want`), for jobs that keep every card of a
    case in step. A card with nothing left to act on (`actionable` "false") is closed first, so a late tap gets the
    card back instead of acting. A card still queued in the outbox gets the new data in its payload; a delivered one
    one metered update. Returns True when DingTalk was called; its errors propagate (the caller logs them)."""
    db = session()
    if want.get("actionable") == "false":
        db.execute(
            sa.update(BotCard)
            .where(BotCard.out_track_id == out_track_id, BotCard.acted_by.is_(None))
            .values(acted_by="", action_id=closed_action, acted_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        db.commit()
    changes = {key: value for key, value in want.items() if shown.get(key) != value}
    if not changes:
        return False
    queued = db.scalar(
        sa.select(OutboxMessage).where(OutboxMessage.out_track_id == out_track_id, OutboxMessage.state == "queued")
    )
    if queued is not None:
        payload = dict(queued.payload)
        payload["card_data"] = {**payload.get("card_data", {}), **changes}
        queued.payload = payload
        card = db.get(BotCard, out_track_id)
        card.data = {**card.data, **changes}
        db.commit()
        return False
    update_card(out_track_id, changes)
    return True


def register_callback(url: str) -> None:
    """Tell DingTalk where card clicks go (`/v1.0/card/callbacks/register`), with the secret that signs them."""
    from alibabacloud_dingtalk.card_1_0 import models as card_models

    request = card_models.RegisterCallbackRequest(
        callback_route_key=CALLBACK_ROUTE_KEY, callback_url=url, api_secret=api_secret(), force_update=True
    )
    get_gateway().api("card_1_0", "register_callback", request)


# -- clicks ---------------------------------------------------------------------------------------------------


def api_secret() -> str:
    """The card callback secret, derived from SECRET_KEY so every process agrees without another setting."""
    key = current_app.config["SETTINGS"].secret_key.encode()
    return hmac.new(key, b"bot.card-callback", hashlib.sha256).hexdigest()[:32]


def verify_signature(timestamp: str | None, signature: str | None, now_ms: int | None = None) -> None:
    """`x-ddpaas-signature` = base64(HMAC-SHA256(apiSecret, timestamp)) (dingtalk.md §5.3); raise 401 if wrong."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    if not timestamp or not signature or not timestamp.isdigit():
        raise ApiError("bad_signature", "缺少卡片回调签名", status=401)
    if abs(now_ms - int(timestamp)) > SIGNATURE_TOLERANCE_MS:
        raise ApiError("bad_signature", "卡片回调时间戳过期", status=401)
    expected = base64.b64encode(hmac.new(api_secret().encode(), timestamp.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected.decode(), signature):
        raise ApiError("bad_signature", "卡片回调签名不正确", status=401)


def parse_click(payload: Mapping) -> CardClick:
    """The §5.4 actionCallback payload; `content` is a JSON string with the button's id and params."""
    try:
        content = payload["content"]
        content = json.loads(content) if isinstance(content, str) else content
        private = content["cardPrivateData"]
        return CardClick(
            out_track_id=str(payload["outTrackId"]),
            action_id=str(private["actionIds"][0]),
            userid=str(payload["userId"]),
            params=private.get("params") or {},
            card_data={},
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ApiError("invalid_callback", "卡片回调内容不完整", field="content") from exc


def handle_click(payload: Mapping) -> dict:
    """Apply a click once and answer with the card's data (the HTTP reply DingTalk shows at once)."""
    click = parse_click(payload)
    handler = HANDLERS.get(click.action_id)
    if handler is None:
        raise ApiError("unknown_action", f"没有处理 {click.action_id} 的程序", field="actionIds")
    db = session()
    # Claim first, read after: the write comes first so that concurrent taps queue on the row (PostgreSQL) or
    # on the database lock (SQLite) instead of racing from a stale read.
    claimed = db.execute(
        sa.update(BotCard)
        .where(BotCard.out_track_id == click.out_track_id, BotCard.acted_by.is_(None))
        .values(acted_by=click.userid, action_id=click.action_id, acted_at=utcnow(), version=BotCard.version + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    card = db.get(BotCard, click.out_track_id, populate_existing=True)
    if card is None:
        db.rollback()
        raise ApiError("not_found", "卡片不存在", status=404)
    if claimed:
        try:
            changes = handler(
                CardClick(click.out_track_id, click.action_id, click.userid, click.params, dict(card.data))
            )
        except KeepOpen as keep:
            db.rollback()  # the claim is undone: the card stays open for a real decision
            return _reply(db.get(BotCard, click.out_track_id).data, private=keep.changes)
        except Exception:
            db.rollback()  # the card stays open: the next tap may succeed
            raise
        card.data = {**card.data, **{k: str(v) for k, v in (changes or {}).items()}}
        db.commit()
        log.info("card action applied", extra={"action": click.action_id, "card": click.out_track_id})
    else:
        db.rollback()
    return _reply(dict(card.data))


def _reply(data: Mapping[str, str], private: Mapping[str, str] | None = None) -> dict:
    reply: dict = {
        "cardData": {"cardParamMap": dict(data)},
        "cardUpdateOptions": {"updateCardDataByKey": True, "updatePrivateDataByKey": True},
    }
    if private:
        reply["userPrivateData"] = {"cardParamMap": dict(private)}  # the clicking user's own view (dingtalk.md §5.4)
    return reply


@card_action("approval.agree")
def _agree(click: CardClick) -> dict[str, str]:
    from bot import approvals  # approvals sends cards through this module

    return approvals.decide_by_card(click, "agree")


@card_action("approval.refuse")
def _refuse(click: CardClick) -> dict[str, str]:
    from bot import approvals

    return approvals.decide_by_card(click, "refuse")
