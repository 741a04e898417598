"""The referral state machine (reference/domain.md §4.3), in one place: which action moves a referral from which
state to which, and which side may take it. Everything that changes a referral's state asks `transition`; an
action that does not apply is refused with the actions that do (the API answers 409 with them).

Up and lateral referrals (上转/平转) go to a hospital department that accepts, books a slot, sees the patient
arrive and finishes treatment. A down-referral (下转) is a new referral linked to the up-referral it follows; the
grassroots side accepts it, receives the patient (回复单) and follows them up in rehabilitation until it closes.
"""

from __future__ import annotations

from dataclasses import dataclass

# Chinese labels as clinicians see them (待接收, 已接收 …).
STATES = {
    "draft": "草稿",
    "submitted": "待接收",
    "accepted": "已接收",
    "scheduled": "已预约",
    "arrived": "已到诊",
    "in_treatment": "诊疗中",
    "completed": "诊疗完毕",
    "received_patient": "基层已接诊",
    "rehab_follow_up": "康复随访中",
    "rejected": "已退回",
    "cancelled": "已取消",
    "expired": "超时未接收",
    "no_show": "爽约",
    "closed": "已结案",
}
TERMINAL = frozenset({"cancelled", "closed"})
DIRECTIONS = {"up": "上转", "down": "下转", "lateral": "平转"}

APPLICANT, RECEIVER, SYSTEM = "applicant", "receiver", "system"


@dataclass(frozen=True)
class Move:
    action: str
    label: str
    sources: frozenset[str]
    target: str
    side: str  # who may take it: the applicant's side, the receiving side, or the platform (timers)
    needs_reason: bool = False


def _moves(*moves: Move) -> dict[str, Move]:
    return {move.action: move for move in moves}


_COMMON = (
    Move("submit", "提交", frozenset({"draft"}), "submitted", APPLICANT),
    Move("resubmit", "修改后重新提交", frozenset({"rejected", "expired"}), "submitted", APPLICANT),
    Move("accept", "接收", frozenset({"submitted"}), "accepted", RECEIVER),
    Move("reject", "退回", frozenset({"submitted"}), "rejected", RECEIVER, needs_reason=True),
    Move("expire", "超时", frozenset({"submitted"}), "expired", SYSTEM),
)

UP = _moves(
    *_COMMON,
    # Green channel (绿色通道): the platform accepts an emergency referral the moment it is submitted.
    Move("auto_accept", "绿色通道自动接收", frozenset({"submitted"}), "accepted", SYSTEM),
    Move("cancel", "撤销", frozenset({"draft", "submitted", "accepted", "scheduled"}), "cancelled", APPLICANT, True),
    Move("schedule", "预约号源", frozenset({"accepted", "no_show"}), "scheduled", RECEIVER),
    # Green channel and walk-in emergencies arrive without a booked slot.
    Move("arrive", "到诊", frozenset({"accepted", "scheduled"}), "arrived", RECEIVER),
    Move("no_show", "爽约", frozenset({"scheduled"}), "no_show", SYSTEM),
    Move("start_treatment", "开始诊疗", frozenset({"arrived"}), "in_treatment", RECEIVER),
    Move("complete", "诊疗完毕", frozenset({"arrived", "in_treatment"}), "completed", RECEIVER),
    Move("close", "结案", frozenset({"completed", "rejected", "expired", "no_show"}), "closed", APPLICANT),
)

DOWN = _moves(
    *_COMMON,
    Move("cancel", "撤销", frozenset({"draft", "submitted", "accepted"}), "cancelled", APPLICANT, True),
    Move("receive_patient", "接诊回复", frozenset({"accepted"}), "received_patient", RECEIVER),
    Move("start_follow_up", "开始康复随访", frozenset({"received_patient"}), "rehab_follow_up", RECEIVER),
    Move("close", "结案", frozenset({"rehab_follow_up", "rejected", "expired"}), "closed", RECEIVER),
)


def moves_for(direction: str) -> dict[str, Move]:
    return DOWN if direction == "down" else UP


class IllegalTransition(Exception):
    """The action does not apply to the referral as it is; `allowed` lists what does (for the 409 body)."""

    def __init__(self, direction: str, state: str, action: str, allowed: list[str]) -> None:
        self.direction, self.state, self.action, self.allowed = direction, state, action, allowed
        names = "、".join(allowed) or "无"
        super().__init__(f"转诊当前为「{STATES.get(state, state)}」，不能「{action}」；可执行：{names}")


def allowed_actions(direction: str, state: str, side: str | None = None) -> list[str]:
    """Actions that apply now, in the table's order; only `side`'s own when given."""
    return [
        move.action
        for move in moves_for(direction).values()
        if state in move.sources and (side is None or move.side == side)
    ]


def transition(direction: str, state: str, action: str) -> Move:
    """The move `action` makes from `state`, or `IllegalTransition` naming the actions that apply."""
    move = moves_for(direction).get(action)
    if move is None or state not in move.sources:
        raise IllegalTransition(direction, state, action, allowed_actions(direction, state))
    return move


# FHIR R4 Task.status with the fine state as businessStatus (domain.md §4.5), for the Bundle export.
FHIR_TASK_STATUS = {
    "draft": "draft",
    "submitted": "requested",
    "accepted": "accepted",
    "scheduled": "accepted",
    "arrived": "in-progress",
    "in_treatment": "in-progress",
    "received_patient": "in-progress",
    "rehab_follow_up": "in-progress",
    "completed": "completed",
    "closed": "completed",
    "rejected": "rejected",
    "cancelled": "cancelled",
    "expired": "failed",
    "no_show": "failed",
}
