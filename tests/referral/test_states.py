"""The referral state machine: every state is reachable from a draft, only closing and cancelling end it, and an
action out of order names the actions that apply."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mini_apps.referral import states


def reachable(direction: str) -> set[str]:
    seen, queue = {"draft"}, deque(["draft"])
    while queue:
        state = queue.popleft()
        for action in states.allowed_actions(direction, state):
            target = states.transition(direction, state, action).target
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


def test_up_and_down_referrals_reach_their_states_and_end_only_by_closing_or_cancelling():
    assert reachable("up") == set(states.STATES) - {"received_patient", "rehab_follow_up"}
    assert reachable("down") == set(states.STATES) - {"scheduled", "arrived", "in_treatment", "completed", "no_show"}
    for direction in states.DIRECTIONS:
        for state in reachable(direction):
            actions = states.allowed_actions(direction, state)
            assert (not actions) == (state in states.TERMINAL), (direction, state)


def test_the_happy_paths():
    state = "draft"
    for action in ("submit", "accept", "schedule", "arrive", "start_treatment", "complete", "close"):
        state = states.transition("up", state, action).target
    assert state == "closed"
    state = "draft"
    for action in ("submit", "accept", "receive_patient", "start_follow_up", "close"):
        state = states.transition("down", state, action).target
    assert state == "closed"


def test_an_action_out_of_order_lists_what_applies():
    with pytest.raises(states.IllegalTransition) as info:
        states.transition("up", "submitted", "arrive")
    assert info.value.allowed == ["accept", "reject", "expire", "auto_accept", "cancel"]
    assert "待接收" in str(info.value) and "accept" in str(info.value)
    with pytest.raises(states.IllegalTransition) as info:
        states.transition("down", "accepted", "schedule")  # down-referrals book no slot
    assert info.value.allowed == ["cancel", "receive_patient"]


def test_sides_take_only_their_own_actions():
    assert states.allowed_actions("up", "submitted", states.RECEIVER) == ["accept", "reject"]
    assert states.allowed_actions("up", "submitted", states.APPLICANT) == ["cancel"]
    assert states.allowed_actions("up", "submitted", states.SYSTEM) == ["expire", "auto_accept"]
    assert states.allowed_actions("down", "submitted", states.SYSTEM) == ["expire"]  # no green channel down
    assert states.transition("up", "submitted", "reject").needs_reason


@given(
    st.sampled_from(sorted(states.DIRECTIONS)),
    st.sampled_from(sorted(states.STATES)),
    st.text(min_size=1, max_size=20),
)
def test_transition_either_moves_to_a_known_state_or_refuses_with_the_allowed_actions(direction, state, action):
    try:
        move = states.transition(direction, state, action)
    except states.IllegalTransition as exc:
        assert action not in exc.allowed
        assert exc.allowed == states.allowed_actions(direction, state)
    else:
        assert move.target in states.STATES and state in move.sources
    assert set(states.FHIR_TASK_STATUS) == set(states.STATES)
