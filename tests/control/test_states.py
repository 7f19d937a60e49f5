"""The transition table: every pair of states is either allowed or refused, on purpose."""

from __future__ import annotations

import pytest

from despina.control.states import TRANSITIONS, TaskState, check_transition, group_state
from despina.core.errors import StateError

S = TaskState
ALLOWED = {
    (S.PENDING, S.RUNNING),
    (S.PENDING, S.CANCELLED),
    (S.RUNNING, S.SUCCEEDED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.RETRYING),
    (S.RUNNING, S.CANCELLED),
    (S.RETRYING, S.PENDING),
    (S.RETRYING, S.FAILED),
    (S.RETRYING, S.CANCELLED),
}


@pytest.mark.parametrize("current", list(S))
@pytest.mark.parametrize("new", list(S))
def test_every_pair(current: TaskState, new: TaskState) -> None:
    if (current, new) in ALLOWED:
        check_transition(current, new)
    else:
        with pytest.raises(StateError, match=f"from {current.value} to {new.value}"):
            check_transition(current, new)


def test_terminal_states_have_no_way_out_but_a_manual_retry() -> None:
    for state in (S.SUCCEEDED, S.FAILED, S.CANCELLED):
        assert state.terminal and not TRANSITIONS[state]
    check_transition(S.FAILED, S.PENDING, manual_retry=True)
    check_transition(S.CANCELLED, S.PENDING, manual_retry=True)
    with pytest.raises(StateError):
        check_transition(S.SUCCEEDED, S.PENDING, manual_retry=True)


def test_group_state_is_the_least_advanced_task() -> None:
    def counts(**kw: int) -> dict[TaskState, int]:
        return {S(k.upper()): v for k, v in kw.items()}

    assert group_state({}) == "CREATED"
    assert group_state(counts(pending=3)) == "PENDING"
    assert group_state(counts(pending=1, succeeded=2)) == "RUNNING"
    assert group_state(counts(retrying=1, succeeded=2)) == "RUNNING"
    assert group_state(counts(failed=1, succeeded=2)) == "FAILED"
    assert group_state(counts(cancelled=1, succeeded=2)) == "CANCELLED"
    assert group_state(counts(succeeded=2)) == "SUCCEEDED"
