"""Writes giosg applies after the client gave up on them: nothing of an ended binding is left, and
a live binding holds its own user's values, once the sweep has run past ``SETTLE_DELAY``.

The simulator's ``late`` fault applies a request after the client's timeout and never answers it,
as a giosg would whose answer was lost. What was measured from outside: a variable POST applied
after the logout's DELETE of its key (which found nothing, 404) was left for good; in a user
switch, the old user's late writes overwrote and deleted the new user's variables.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from django_giosg.models import State, VisitorLink
from django_giosg.testing import GiosgSimulator

from ..browsing import VISITOR, Browser, make_user, same_device, sweep
from ..conftest import LinkClock

pytestmark = pytest.mark.django_db(transaction=True)

SETTLE_DELAY = 60
READ_TIMEOUT = 0.3


@pytest.fixture
def giosg(giosg_simulator: GiosgSimulator, settings: Any, empty_cache: None) -> GiosgSimulator:
    settings.GIOSG = {
        **settings.GIOSG,
        "ROOM_IDS": giosg_simulator.room_ids[:1],
        "TIMEOUT": [1.0, READ_TIMEOUT],
        "INLINE_BUDGET": 3.0,
        "MAX_RETRIES": 1,
        "SETTLE_DELAY": SETTLE_DELAY,
    }
    return giosg_simulator


def landed(giosg: GiosgSimulator, count: int, seconds: float = 10.0) -> None:
    """Wait until ``count`` late requests have taken effect."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sum(call.outcome == "late" for call in giosg.calls) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} late requests took effect")


def values_of(giosg: GiosgSimulator, user: Any) -> dict[str, dict[str, str]]:
    return {giosg.room_ids[0]: {"username": user.get_username(), "user_id": str(user.pk)}}


def switch_users(ann: Any, bob: Any, between: Callable[[], object] = lambda: None) -> Browser:
    """Ann logs in, then Bob in another tab of the same browser (a user switch): Bob's tab."""
    tab, other_tab = Browser(), Browser()
    same_device(tab, other_tab)
    tab.capture()
    tab.login(ann)
    between()
    other_tab.capture()
    other_tab.login(bob)
    return other_tab


def state_of(user: Any) -> str:
    link: VisitorLink = VisitorLink.objects.get(user=user)
    return link.state


def test_a_set_applied_after_the_logout_is_deleted_once_it_has_settled(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    """The reproduction: giosg holds the first variable POST past the client's timeout; login;
    logout; the value lands after the logout's delete of it found nothing."""
    giosg.seed_visitor(VISITOR, rooms=giosg.room_ids[:1], open_chats=1)
    giosg.add_fault("set_variable", late=1.0, times=1)
    ann = make_user("ann")
    browser = Browser()
    browser.capture()
    browser.login(ann)
    browser.logout()
    assert state_of(ann) == State.SETTLING  # its chats ended, its keys deleted, for now
    assert giosg.open_chats(VISITOR) == []
    landed(giosg, 1)
    assert giosg.variables(VISITOR) != {}  # what the late POST left
    assert "0 due link(s)" in sweep()  # nothing before the delay is over
    assert giosg.variables(VISITOR) != {}
    link_clock.advance(SETTLE_DELAY + 1)
    assert "1 due link(s): 1 done" in sweep()
    assert giosg.variables(VISITOR) == {}
    assert state_of(ann) == State.DETACHED


def test_a_switch_with_late_writes_on_both_sides_ends_with_the_new_users_values(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    """Ann's first set lands after Bob's sets (her value on his key), and the first delete of
    Ann's detach lands after them too (his key gone). Bob's chat, begun after his login, is his:
    nothing that settles Ann's binding ends it."""
    giosg.seed_visitor(VISITOR, rooms=giosg.room_ids[:1], open_chats=1)
    ann, bob = make_user("ann"), make_user("bob")
    giosg.add_fault("set_variable", late=1.5, times=1)
    other_tab = switch_users(
        ann, bob, between=lambda: giosg.add_fault("delete_variable", late=1.5, times=1)
    )
    assert (state_of(ann), state_of(bob)) == (State.SETTLING, State.PENDING_ATTACH)
    (bobs_chat,) = giosg.seed_visitor(VISITOR, rooms=giosg.room_ids[:1], open_chats=1)
    landed(giosg, 2)
    assert giosg.variables(VISITOR) != values_of(giosg, bob)  # the damage the late writes did
    link_clock.advance(3600)  # past the delay, and past the backoff of Ann's delete that timed out
    assert "2 due link(s): 2 done" in sweep()
    assert giosg.variables(VISITOR) == values_of(giosg, bob)
    assert (state_of(ann), state_of(bob)) == (State.DETACHED, State.ATTACHED)
    assert giosg.open_chats(VISITOR) == [bobs_chat]
    other_tab.logout()
    link_clock.advance(SETTLE_DELAY + 1)
    sweep()
    assert giosg.variables(VISITOR) == {}
    assert giosg.open_chats(VISITOR) == []


def test_a_relogin_sets_again_after_the_previous_bindings_late_delete(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    """The same user again, in the same browser: the logout's delete lands after the new login
    set the key. The new binding sets it again once that delete has settled."""
    ann = make_user("ann")
    browser = Browser()
    browser.capture()
    browser.login(ann)
    giosg.add_fault("delete_variable", late=1.0, times=1)
    browser.logout()
    browser.capture()
    browser.login(ann)
    landed(giosg, 1)
    assert giosg.variables(VISITOR) != values_of(giosg, ann)
    link_clock.advance(SETTLE_DELAY + 1)
    sweep()
    assert giosg.variables(VISITOR) == values_of(giosg, ann)
    # The old binding's own delete failed (timed out): it deletes its keys, but not the new
    # binding's, once its backoff is over.
    link_clock.advance(3600)
    sweep()
    assert giosg.variables(VISITOR) == values_of(giosg, ann)
    states = sorted(VisitorLink.objects.values_list("state", flat=True))
    assert states == [State.ATTACHED, State.DETACHED]


def test_without_unanswered_writes_nothing_waits(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    """Errors giosg answered (a 500, a 503) do not make anything settle: they were not done."""
    giosg.add_fault("set_variable", status=503, times=1)
    giosg.add_fault("delete_variable", status=500, times=1)
    ann, bob = make_user("ann"), make_user("bob")
    switch_users(ann, bob)
    sweep()  # the failed attempts are due now (the link clock has not moved)
    link_clock.advance(3600)
    sweep()
    assert (state_of(ann), state_of(bob)) == (State.DETACHED, State.ATTACHED)
    assert not VisitorLink.objects.exclude(sets_unsettled_until=None).exists()
    assert not VisitorLink.objects.exclude(deletes_unsettled_until=None).exists()
    assert giosg.variables(VISITOR) == values_of(giosg, bob)


def test_a_settle_after_the_next_bindings_sets_spares_its_keys(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    """Ann's second delete may come after Bob's binding has set his variables for good (her
    settle failed and was retried, or another worker was slow): her keys that Bob's binding
    holds are his now; her other keys go."""
    room = giosg.room_ids[0]
    ann, bob = make_user("ann"), make_user("bob")
    switch_users(ann, bob)
    assert (state_of(ann), state_of(bob)) == (State.DETACHED, State.ATTACHED)
    # As if Ann's set of a key Bob has not got had landed late, and her detach waited for it.
    giosg.seed_visitor(VISITOR, rooms=[room], open_chats=1, variables={"email": "ann@example"})
    VisitorLink.objects.filter(user=ann).update(
        state=State.SETTLING,
        keys={room: ["username", "user_id", "email"]},
        next_attempt_at=link_clock(),
    )
    assert "1 due link(s): 1 done" in sweep()
    assert giosg.variables(VISITOR) == values_of(giosg, bob)
    assert len(giosg.open_chats(VISITOR)) == 1  # Bob's: no settle ends a chat
    assert state_of(ann) == State.DETACHED


def test_a_detach_whose_deletes_failed_never_ends_the_next_users_chat(
    giosg: GiosgSimulator, link_clock: LinkClock
) -> None:
    """Ann's chats end at the switch but her deletes fail: her retries only delete keys, and
    Bob, attached meanwhile, keeps the chat he opens."""
    giosg.seed_visitor(VISITOR, rooms=giosg.room_ids[:1], open_chats=1)
    ann, bob = make_user("ann"), make_user("bob")
    giosg.add_fault("delete_variable", status=500, times=20)
    switch_users(ann, bob)
    assert (state_of(ann), state_of(bob)) == (State.SETTLING, State.ATTACHED)
    assert giosg.open_chats(VISITOR) == []  # Ann's, ended at the switch
    (bobs_chat,) = giosg.seed_visitor(VISITOR, rooms=giosg.room_ids[:1], open_chats=1)
    giosg.clear_faults()
    link_clock.advance(3600)
    sweep()
    assert giosg.open_chats(VISITOR) == [bobs_chat]
    assert giosg.variables(VISITOR) == values_of(giosg, bob)
    assert (state_of(ann), state_of(bob)) == (State.DETACHED, State.ATTACHED)
