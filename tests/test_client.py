"""Unit tests of the giosg HTTP client, with ``responses`` standing in for giosg."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from django_giosg import __version__
from django_giosg.client import Chat, GiosgClient, Room
from django_giosg.errors import (
    GiosgAPIError,
    GiosgAuthError,
    GiosgError,
    GiosgNotFound,
    GiosgRateLimited,
    GiosgUnavailable,
)

from .conftest import BASE, CHAT, ORG, ORG_URL, ROOM, TOKEN, VISITOR, FakeClock

VARIABLES_URL = f"{ORG_URL}/rooms/{ROOM}/visitors/{VISITOR}/variables"
CHATS_URL = f"{ORG_URL}/rooms/{ROOM}/visitors/{VISITOR}/chats"
ROOMS_URL = f"{ORG_URL}/rooms"
CHAT_URL = f"{ORG_URL}/owned_chats/{CHAT}"
ME_URL = f"{BASE}/api/v5/users/me"


def shown(url: str) -> str:
    """How errors and logs show a URL: its path, with the visitor id shortened."""
    return url.removeprefix(BASE).replace(f"/visitors/{VISITOR}/", f"/visitors/{VISITOR[:6]}…/")


def page(results: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    return {"next": next_url, "previous": None, "results": results}


def timeout_of(mocked: responses.RequestsMock, index: int) -> object:
    """The timeout that the client gave ``requests`` for one call."""
    return mocked.calls[index].request.req_kwargs["timeout"]  # type: ignore[attr-defined]


def chat_json(chat_id: str = CHAT, *, is_ended: bool = False) -> dict[str, Any]:
    return {"id": chat_id, "room_id": ROOM, "room_organization_id": ORG, "is_ended": is_ended}


# Each endpoint: how to call it, its method and URL, a successful answer.
Call = Callable[[GiosgClient], object]
ENDPOINTS: dict[str, tuple[Call, str, str, int, Any]] = {
    "set_variable": (
        lambda c: c.set_variable(ROOM, VISITOR, "username", "Alice"),
        "POST",
        VARIABLES_URL,
        201,
        {"key": "username", "value": "Alice"},
    ),
    "delete_variable": (
        lambda c: c.delete_variable(ROOM, VISITOR, "username"),
        "DELETE",
        f"{VARIABLES_URL}/username",
        204,
        None,
    ),
    "iter_rooms": (lambda c: list(c.iter_rooms()), "GET", ROOMS_URL, 200, page([])),
    "iter_open_chats": (
        lambda c: list(c.iter_open_chats(ROOM, VISITOR)),
        "GET",
        CHATS_URL,
        200,
        page([]),
    ),
    "end_chat": (lambda c: c.end_chat(CHAT), "PATCH", CHAT_URL, 200, chat_json(is_ended=True)),
    "get_chat": (lambda c: c.get_chat(CHAT), "GET", CHAT_URL, 200, chat_json()),
    "check_credentials": (lambda c: c.check_credentials(), "GET", ME_URL, 200, {"id": "u1"}),
}

# The statuses giosg documents for each endpoint (giosg-api.md §1, §4), with the error raised.
DOCUMENTED_ERRORS = {
    "set_variable": (400, 401, 403, 404, 405),
    "delete_variable": (401, 403, 404, 405),
    "iter_rooms": (401, 403, 405),
    "iter_open_chats": (400, 401, 403, 404, 405),
    "end_chat": (400, 401, 403, 404, 405),
    "get_chat": (401, 403, 404, 405),
    "check_credentials": (401, 403, 405),
}
ERROR_CLASS = {
    400: GiosgAPIError,
    401: GiosgAuthError,
    403: GiosgAuthError,
    404: GiosgNotFound,
    405: GiosgAPIError,
}


def add(mocked: responses.RequestsMock, method: str, url: str, status: int, body: Any) -> None:
    if body is None:
        mocked.add(method, url, status=status)
    else:
        mocked.add(method, url, status=status, json=body)


@pytest.mark.parametrize("name", ENDPOINTS)
def test_success_sends_the_documented_request(
    name: str, client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    call, method, url, status, body = ENDPOINTS[name]
    add(mocked, method, url, status, body)

    call(client)

    assert len(mocked.calls) == 1
    request = mocked.calls[0].request
    assert request.method == method
    assert request.headers["Authorization"] == f"Token {TOKEN}"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"] == f"django-giosg/{__version__}"
    assert "Cookie" not in request.headers


def test_set_variable_posts_one_key_as_json(
    client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    mocked.post(
        VARIABLES_URL,
        status=201,
        match=[matchers.json_params_matcher({"key": "username", "value": "Alice"})],
    )
    client.set_variable(ROOM, VISITOR, "username", "Alice")
    assert mocked.calls[0].request.headers["Content-Type"] == "application/json"


def test_set_variable_accepts_200_for_an_overwrite(
    client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    mocked.post(VARIABLES_URL, status=200, json={"key": "username"})
    client.set_variable(ROOM, VISITOR, "username", "Alice")


def test_end_chat_patches_is_ended(client: GiosgClient, mocked: responses.RequestsMock) -> None:
    mocked.patch(CHAT_URL, status=200, match=[matchers.json_params_matcher({"is_ended": True})])
    client.end_chat(CHAT)


def test_path_segments_are_quoted(client: GiosgClient, mocked: responses.RequestsMock) -> None:
    mocked.delete(f"{VARIABLES_URL}/a%2Fb%3Fc", status=204)
    client.delete_variable(ROOM, VISITOR, "a/b?c")
    assert mocked.calls[0].request.url == f"{VARIABLES_URL}/a%2Fb%3Fc"


def test_get_chat_and_check_credentials_parse_the_body(
    client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    mocked.get(CHAT_URL, json=chat_json(is_ended=True))
    mocked.get(ME_URL, json={"id": "u1", "first_name": "Bot"})
    assert client.get_chat(CHAT) == Chat(CHAT, ORG, is_ended=True)
    assert client.check_credentials() == {"id": "u1", "first_name": "Bot"}


@pytest.mark.parametrize(
    ("name", "status"),
    [(name, status) for name, statuses in DOCUMENTED_ERRORS.items() for status in statuses],
)
def test_documented_error_statuses_raise_typed_errors_without_retrying(
    name: str, status: int, client: GiosgClient, mocked: responses.RequestsMock, clock: FakeClock
) -> None:
    call, method, url, _, _ = ENDPOINTS[name]
    mocked.add(method, url, status=status, json={"detail": "nope"})

    with pytest.raises(ERROR_CLASS[status]) as caught:
        call(client)

    error = caught.value
    assert type(error) is ERROR_CLASS[status]
    assert (error.method, error.path, error.status) == (method, shown(url), status)
    assert str(status) in str(error)
    assert len(mocked.calls) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("body", "content_type", "excerpt"),
    [
        (json.dumps({"key": ["This field is required."]}), "application/json", "required"),
        ("Bad Request: missing key", "text/plain", "missing key"),
        ("", "text/plain", ""),
    ],
    ids=["json", "plain-text", "empty"],
)
def test_error_bodies_of_any_kind_are_kept_as_an_excerpt(
    body: str, content_type: str, excerpt: str, client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    mocked.post(VARIABLES_URL, status=400, body=body, content_type=content_type)
    with pytest.raises(GiosgAPIError) as caught:
        client.set_variable(ROOM, VISITOR, "username", "Alice")
    assert caught.value.body == body
    assert excerpt in caught.value.body
    assert str(caught.value) == (
        f"giosg answered 400 Bad Request (POST {shown(VARIABLES_URL)}, HTTP 400)"
    )


@pytest.mark.parametrize(
    ("body", "content_type"),
    [("<html>oops</html>", "text/html"), ("[1, 2]", "application/json"), ("", "text/plain")],
)
def test_a_success_without_the_expected_json_is_an_api_error(
    body: str, content_type: str, client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    mocked.get(CHAT_URL, status=200, body=body, content_type=content_type)
    with pytest.raises(GiosgAPIError, match="not a JSON object") as caught:
        client.get_chat(CHAT)
    assert caught.value.status == 200


def test_an_unexpected_success_status_is_an_api_error(
    client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    mocked.post(VARIABLES_URL, status=302, headers={"Location": "https://elsewhere.test/"})
    with pytest.raises(GiosgAPIError, match="302 Found"):
        client.set_variable(ROOM, VISITOR, "username", "Alice")
    assert len(mocked.calls) == 1  # redirects are not followed


# -- pagination ---------------------------------------------------------------------------------


def room_json(number: int, *, shared: bool = False) -> dict[str, Any]:
    return {
        "id": f"00000000-0000-4000-8000-{number:012d}",
        "organization_id": "11111111-1111-4111-8111-111111111111" if shared else ORG,
        "is_shared": shared,
        "name": f"Room {number}",
    }


def test_rooms_are_read_over_three_pages_following_absolute_next_urls(
    client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    second = f"{ROOMS_URL}?cursor=c2a8f0"
    third = f"{ROOMS_URL}?cursor=9d01bb"
    mocked.get(
        ROOMS_URL,
        json=page([room_json(1), room_json(2)], second),
        match=[matchers.query_string_matcher("")],
    )
    mocked.get(
        ROOMS_URL,
        json=page([room_json(3, shared=True)], third),
        match=[matchers.query_param_matcher({"cursor": "c2a8f0"})],
    )
    mocked.get(
        ROOMS_URL,
        json=page([room_json(4)]),
        match=[matchers.query_param_matcher({"cursor": "9d01bb"})],
    )

    rooms = list(client.iter_rooms())

    assert [room.name for room in rooms] == ["Room 1", "Room 2", "Room 3", "Room 4"]
    assert rooms[2] == Room(
        id="00000000-0000-4000-8000-000000000003",
        organization_id="11111111-1111-4111-8111-111111111111",
        is_shared=True,
        name="Room 3",
    )
    assert [call.request.url for call in mocked.calls] == [ROOMS_URL, second, third]


def test_pages_are_fetched_only_as_they_are_consumed(
    client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    mocked.get(ROOMS_URL, json=page([room_json(1)], f"{ROOMS_URL}?cursor=x"))
    rooms = client.iter_rooms()
    assert next(rooms).name == "Room 1"
    assert len(mocked.calls) == 1


def test_open_chats_ask_for_is_ended_false_and_filter_again(
    client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    second = f"{CHATS_URL}?is_ended=false&cursor=p2"
    third = f"{CHATS_URL}?is_ended=false&cursor=p3"
    open_ids = [f"00000000-0000-4000-8000-00000000000{n}" for n in (1, 3, 4)]
    mocked.get(
        CHATS_URL,
        json=page([chat_json(open_ids[0]), chat_json("ended-1", is_ended=True)], second),
        match=[matchers.query_string_matcher("is_ended=false")],
    )
    mocked.get(
        CHATS_URL,
        json=page([chat_json(open_ids[1])], third),
        match=[matchers.query_string_matcher("is_ended=false&cursor=p2")],
    )
    mocked.get(
        CHATS_URL,
        json=page([chat_json("ended-2", is_ended=True), chat_json(open_ids[2])]),
        match=[matchers.query_string_matcher("is_ended=false&cursor=p3")],
    )

    chats = list(client.iter_open_chats(ROOM, VISITOR))

    assert [chat.id for chat in chats] == open_ids
    assert all(not chat.is_ended for chat in chats)
    assert len(mocked.calls) == 3


def test_a_relative_next_is_resolved_against_the_page(
    client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    mocked.get(
        ROOMS_URL,
        json=page([room_json(1)], "?cursor=rel"),
        match=[matchers.query_string_matcher("")],
    )
    mocked.get(
        ROOMS_URL, json=page([room_json(2)]), match=[matchers.query_string_matcher("cursor=rel")]
    )
    assert len(list(client.iter_rooms())) == 2


def test_a_next_url_on_another_host_is_refused_and_never_called(
    client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    mocked.get(ROOMS_URL, json=page([room_json(1)], "https://evil.test/steal?cursor=1"))
    with pytest.raises(GiosgAPIError, match="another host"):
        list(client.iter_rooms())
    assert [call.request.url for call in mocked.calls] == [ROOMS_URL]


def test_a_pagination_loop_is_detected(
    client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    loop = f"{ROOMS_URL}?cursor=again"
    mocked.get(ROOMS_URL, json=page([room_json(1)], loop))
    with pytest.raises(GiosgAPIError, match="pagination loop"):
        list(client.iter_rooms())
    assert len(mocked.calls) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"results": "nope", "next": None}, "not a giosg collection"),
        ({"results": [], "next": 7}, "not a giosg collection"),
        ({"results": ["x"], "next": None}, "not a JSON object"),
        ({"results": [{"name": "no id"}], "next": None}, "without 'id'"),
    ],
)
def test_malformed_pages_are_api_errors(
    body: dict[str, Any], message: str, client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    mocked.get(ROOMS_URL, json=body)
    with pytest.raises(GiosgAPIError, match=message) as caught:
        list(client.iter_rooms())
    assert caught.value.path == ROOMS_URL.removeprefix(BASE)


def test_each_page_is_retried_on_its_own(
    client: GiosgClient, mocked: responses.RequestsMock, clock: FakeClock
) -> None:
    second = f"{ROOMS_URL}?cursor=2"
    mocked.get(
        ROOMS_URL, json=page([room_json(1)], second), match=[matchers.query_string_matcher("")]
    )
    mocked.get(second, status=502)
    mocked.get(second, json=page([room_json(2)]))
    assert len(list(client.iter_rooms())) == 2
    assert clock.sleeps == [0.5]


# -- retries, backoff, Retry-After -------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
@pytest.mark.parametrize("name", ["set_variable", "end_chat", "delete_variable", "get_chat"])
def test_transient_statuses_are_retried_for_every_method(
    name: str, status: int, client: GiosgClient, mocked: responses.RequestsMock, clock: FakeClock
) -> None:
    call, method, url, ok_status, body = ENDPOINTS[name]
    mocked.add(method, url, status=status, body="temporarily down", content_type="text/plain")
    mocked.add(method, url, status=status, json={"detail": "still down"})
    add(mocked, method, url, ok_status, body)

    call(client)

    assert len(mocked.calls) == 3
    assert clock.sleeps == [0.5, 1.0]  # base 0.5 s doubling, jitter factor 1


def test_backoff_is_exponential_with_jitter_and_capped(
    clock: FakeClock, mocked: responses.RequestsMock
) -> None:
    jitter = iter([0.0, 0.999, 0.5, 0.5, 0.5, 0.5])
    giosg = GiosgClient(
        api_token=TOKEN,
        organization_id=ORG,
        base_url=BASE,
        max_retries=5,
        backoff_base=1.0,
        backoff_max=6.0,
        sleep=clock.sleep,
        clock=clock,
        random=lambda: next(jitter),
    )
    mocked.post(VARIABLES_URL, status=503)
    with pytest.raises(GiosgUnavailable) as caught:
        giosg.set_variable(ROOM, VISITOR, "username", "Alice")
    assert caught.value.status == 503
    assert len(mocked.calls) == 6
    assert clock.sleeps == pytest.approx([0.5, 2.998, 4.0, 6.0, 6.0])


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(500, GiosgUnavailable), (503, GiosgUnavailable), (429, GiosgRateLimited)],
)
def test_retries_stop_at_max_retries(
    status: int,
    error_class: type[GiosgError],
    client: GiosgClient,
    mocked: responses.RequestsMock,
    clock: FakeClock,
) -> None:
    mocked.post(VARIABLES_URL, status=status)
    with pytest.raises(error_class) as caught:
        client.set_variable(ROOM, VISITOR, "username", "Alice")
    assert caught.value.status == status
    assert len(mocked.calls) == 4  # one try and MAX_RETRIES=3 retries
    assert len(clock.sleeps) == 3


def test_max_retries_can_be_lowered_per_call(
    client: GiosgClient, mocked: responses.RequestsMock, clock: FakeClock
) -> None:
    mocked.post(VARIABLES_URL, status=503)
    with pytest.raises(GiosgUnavailable):
        client.set_variable(ROOM, VISITOR, "username", "Alice", max_retries=0)
    assert len(mocked.calls) == 1
    assert clock.sleeps == []


def test_retry_after_seconds_are_honoured(
    client: GiosgClient, mocked: responses.RequestsMock, clock: FakeClock
) -> None:
    mocked.post(VARIABLES_URL, status=429, headers={"Retry-After": "7"})
    mocked.post(VARIABLES_URL, status=503, headers={"Retry-After": "0"})
    mocked.post(VARIABLES_URL, status=201)
    client.set_variable(ROOM, VISITOR, "username", "Alice")
    assert clock.sleeps == [7.0, 0.0]  # (the 429's pause for the process is waited once)


def test_retry_after_as_an_http_date_is_honoured(
    client: GiosgClient, mocked: responses.RequestsMock, clock: FakeClock
) -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=20)
    mocked.post(VARIABLES_URL, status=429, headers={"Retry-After": format_datetime(when, True)})
    mocked.post(VARIABLES_URL, status=201)
    client.set_variable(ROOM, VISITOR, "username", "Alice")
    assert len(clock.sleeps) == 1
    assert 17 < clock.sleeps[0] <= 20


@pytest.mark.parametrize("header", ["soon", "", "nan", "Mon, 99 Foo 2020"])
def test_an_unreadable_retry_after_falls_back_to_backoff(
    header: str, client: GiosgClient, mocked: responses.RequestsMock, clock: FakeClock
) -> None:
    mocked.post(VARIABLES_URL, status=429, headers={"Retry-After": header})
    mocked.post(VARIABLES_URL, status=201)
    client.set_variable(ROOM, VISITOR, "username", "Alice")
    assert clock.sleeps == [0.5]


def test_a_retry_after_beyond_the_cap_is_not_waited_for(
    client: GiosgClient, mocked: responses.RequestsMock, clock: FakeClock
) -> None:
    mocked.post(VARIABLES_URL, status=429, headers={"Retry-After": "31"})
    with pytest.raises(GiosgRateLimited) as caught:
        client.set_variable(ROOM, VISITOR, "username", "Alice")
    assert caught.value.retry_after == 31.0
    assert len(mocked.calls) == 1
    assert clock.sleeps == []


# -- a 429 pauses the whole process ---------------------------------------------------------------


def sent_at(clock: FakeClock, times: list[float], status: int) -> Callable[..., Any]:
    """A ``responses`` callback that notes when (on ``clock``) each request was sent."""

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        times.append(clock.now)
        return status, {}, json.dumps(chat_json(is_ended=True))

    return answer


def rate_limited(client: GiosgClient, mocked: responses.RequestsMock, retry_after: str) -> None:
    """One call of the process gets a 429 (and gives up at once, as inside a request)."""
    headers = {"Retry-After": retry_after} if retry_after else {}
    mocked.post(VARIABLES_URL, status=429, headers=headers)
    with pytest.raises(GiosgRateLimited):
        client.set_variable(ROOM, VISITOR, "username", "Alice", max_retries=0)


def test_a_429_pauses_the_other_calls_of_the_process(
    client: GiosgClient, mocked: responses.RequestsMock, clock: FakeClock
) -> None:
    """Another endpoint, another caller: it waits out the pause giosg asked for before it sends,
    rather than finding out with a 429 of its own."""
    rate_limited(client, mocked, "7")
    times: list[float] = []
    mocked.add_callback(responses.PATCH, CHAT_URL, callback=sent_at(clock, times, 200))
    asked_at = clock.now
    client.end_chat(CHAT)
    assert clock.sleeps == [7.0]
    assert times == [asked_at + 7.0]
    client.end_chat(CHAT)  # the pause is over: no more waiting
    assert clock.sleeps == [7.0]


@pytest.mark.parametrize(
    ("retry_after", "pause"),
    [("", 0.5), ("3600", 30.0)],
    ids=["without Retry-After: the first retry's backoff", "at most RETRY_AFTER_CAP"],
)
def test_how_long_a_429_pauses_the_process(
    retry_after: str,
    pause: float,
    client: GiosgClient,
    mocked: responses.RequestsMock,
    clock: FakeClock,
) -> None:
    rate_limited(client, mocked, retry_after)
    mocked.patch(CHAT_URL, json=chat_json(is_ended=True))
    client.end_chat(CHAT)
    assert clock.sleeps == [pause]


def test_a_call_whose_deadline_comes_first_ends_unsent_during_a_pause(
    client: GiosgClient, mocked: responses.RequestsMock, clock: FakeClock
) -> None:
    rate_limited(client, mocked, "7")
    mocked.patch(CHAT_URL, json=chat_json(is_ended=True))
    with pytest.raises(GiosgUnavailable) as caught:  # (giosg answered nothing: not a 429)
        client.end_chat(CHAT, deadline=client.deadline_after(5))
    assert "not sent: giosg asked for a pause, 7.00 s more" in str(caught.value)
    assert caught.value.status is None
    assert caught.value.uncertain == 0
    assert [call.request.method for call in mocked.calls] == ["POST"]
    assert clock.sleeps == []


def test_a_429_during_the_pause_makes_the_waiting_calls_wait_longer(
    client: GiosgClient, mocked: responses.RequestsMock, clock: FakeClock
) -> None:
    rate_limited(client, mocked, "7")
    times: list[float] = []
    mocked.add_callback(responses.PATCH, CHAT_URL, callback=sent_at(clock, times, 200))
    asked_at = clock.now

    def sleep_while_another_call_gets_a_429(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 1:
            rate_limited(client, mocked, "3")

    client._sleep = sleep_while_another_call_gets_a_429
    client.end_chat(CHAT)
    assert clock.sleeps == [7.0, 3.0]
    assert times == [asked_at + 10.0]


class RacingConnections:
    """The process's connections, where another call gets a 429 while the first call to take
    one waits for it."""

    def __init__(self, race: Callable[[], None]) -> None:
        self.real = threading.BoundedSemaphore(2)
        self.race: Callable[[], None] | None = race

    def acquire(self, timeout: float | None = None) -> bool:
        taken = self.real.acquire(timeout=timeout)
        race, self.race = self.race, None
        if race is not None:
            race()
        return taken

    def release(self) -> None:
        self.real.release()


def test_a_pause_that_began_while_a_call_waited_for_its_connection_is_waited_out(
    client: GiosgClient, mocked: responses.RequestsMock, clock: FakeClock
) -> None:
    times: list[float] = []
    mocked.add_callback(responses.PATCH, CHAT_URL, callback=sent_at(clock, times, 200))
    asked_at = clock.now
    client._get_session()  # (the connections are made with the session)
    client._connections = RacingConnections(lambda: rate_limited(client, mocked, "4"))  # type: ignore[assignment]
    client.end_chat(CHAT)
    assert clock.sleeps == [4.0]
    assert times == [asked_at + 4.0]


def test_calls_of_other_threads_wait_out_the_pause(mocked: responses.RequestsMock) -> None:
    """Real threads and time: a call started while the pause lasts is sent after it ends."""
    sent: list[float] = []

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        sent.append(time.monotonic())
        return 200, {}, json.dumps(chat_json(is_ended=True))

    mocked.add_callback(responses.PATCH, CHAT_URL, callback=answer)
    with GiosgClient(api_token=TOKEN, organization_id=ORG, base_url=BASE, max_retries=0) as giosg:
        paused_at = time.monotonic()  # (the pause starts a little later: with the 429)
        rate_limited(giosg, mocked, "0.3")
        threads = [threading.Thread(target=giosg.end_chat, args=(CHAT,)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(sent) == 3
    assert min(sent) >= paused_at + 0.3


def test_retries_are_logged_as_warnings(
    client: GiosgClient, mocked: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    mocked.post(VARIABLES_URL, status=503)
    mocked.post(VARIABLES_URL, status=201)
    with caplog.at_level(logging.WARNING, logger="django_giosg"):
        client.set_variable(ROOM, VISITOR, "username", "Alice")
    [record] = caplog.records
    assert record.name == "django_giosg.client"
    assert record.getMessage() == (
        f"giosg POST {shown(VARIABLES_URL)} failed (HTTP 503); retry 1 of 3 in 0.50 s"
    )


# -- timeouts, connection errors, deadlines ----------------------------------------------------


@pytest.mark.parametrize(
    ("exception", "message"),
    [
        (requests.ConnectTimeout("connect timed out"), "giosg timed out"),
        (requests.ReadTimeout("read timed out"), "giosg timed out"),
        (requests.ConnectionError("refused"), "giosg connection failed"),
        (requests.exceptions.ChunkedEncodingError("dropped"), "giosg connection failed"),
    ],
)
def test_transport_errors_are_retried_then_unavailable(
    exception: Exception,
    message: str,
    client: GiosgClient,
    mocked: responses.RequestsMock,
    clock: FakeClock,
) -> None:
    mocked.patch(CHAT_URL, body=exception)
    with pytest.raises(GiosgUnavailable) as caught:
        client.end_chat(CHAT)
    assert caught.value.status is None
    assert str(caught.value).startswith(message)
    assert type(exception).__name__ in str(caught.value)
    assert caught.value.__cause__ is None  # its frames hold the token (test_client_error_reports)
    assert caught.value.__suppress_context__ or caught.value.__context__ is None
    assert len(mocked.calls) == 4
    assert clock.sleeps == [0.5, 1.0, 2.0]


def test_a_transport_error_then_success(
    client: GiosgClient, mocked: responses.RequestsMock, clock: FakeClock
) -> None:
    mocked.patch(CHAT_URL, body=requests.ReadTimeout("slow"))
    mocked.patch(CHAT_URL, status=200)
    client.end_chat(CHAT)
    assert len(mocked.calls) == 2


def test_every_call_has_the_configured_timeout(
    client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    mocked.get(ME_URL, json={"id": "u1"})
    client.check_credentials()
    assert timeout_of(mocked, 0) == (3.05, 10.0)


def test_a_deadline_shortens_the_socket_timeout(
    client: GiosgClient, mocked: responses.RequestsMock, clock: FakeClock
) -> None:
    mocked.get(ME_URL, json={"id": "u1"})
    client.check_credentials(deadline=client.deadline_after(1.5))
    assert timeout_of(mocked, 0) == (1.5, 1.5)


def test_an_expired_deadline_makes_no_request(
    client: GiosgClient, mocked: responses.RequestsMock, clock: FakeClock
) -> None:
    deadline = client.deadline_after(1.0)
    clock.now += 1.0
    with pytest.raises(GiosgUnavailable, match="deadline exceeded"):
        client.set_variable(ROOM, VISITOR, "username", "Alice", deadline=deadline)
    assert len(mocked.calls) == 0


def test_a_deadline_stops_the_retries_before_a_sleep_past_it(
    client: GiosgClient, mocked: responses.RequestsMock, clock: FakeClock
) -> None:
    mocked.post(VARIABLES_URL, status=503)
    deadline = client.deadline_after(1.2)
    with pytest.raises(GiosgUnavailable) as caught:
        client.set_variable(ROOM, VISITOR, "username", "Alice", deadline=deadline)
    assert caught.value.status == 503
    assert clock.sleeps == [0.5]  # the next backoff (1.0 s) would end after the deadline
    assert len(mocked.calls) == 2
    assert timeout_of(mocked, 1) == pytest.approx((0.7, 0.7))


def test_a_deadline_bounds_a_whole_pagination(
    client: GiosgClient, mocked: responses.RequestsMock, clock: FakeClock
) -> None:
    def slow_page(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        clock.now += 0.6
        pages = len(mocked.calls) + 1
        next_url = f"{ROOMS_URL}?cursor={pages}" if pages < 5 else None
        return 200, {}, json.dumps(page([room_json(pages)], next_url))

    mocked.add_callback("GET", ROOMS_URL, callback=slow_page)
    with pytest.raises(GiosgUnavailable, match="deadline exceeded"):
        list(client.iter_rooms(deadline=client.deadline_after(1.0)))
    assert len(mocked.calls) == 2


# -- one session, no cookies, fork safety ------------------------------------------------------


def test_one_session_is_reused_and_cookies_are_ignored(
    client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    mocked.get(ME_URL, json={"id": "u1"}, headers={"Set-Cookie": "sessionid=abc; Path=/"})
    client.check_credentials()
    session = client._get_session()
    client.check_credentials()
    assert client._get_session() is session
    assert "Cookie" not in mocked.calls[1].request.headers
    adapter = session.get_adapter(BASE)
    assert isinstance(adapter, requests.adapters.HTTPAdapter)
    assert adapter._pool_maxsize == client.pool_size  # type: ignore[attr-defined]


def test_a_forked_process_builds_its_own_session(
    client: GiosgClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent_session = client._get_session()
    monkeypatch.setattr("django_giosg.client.os.getpid", lambda: -1)
    assert client._get_session() is not parent_session


def test_the_environments_proxy_and_ca_bundle_are_used(
    client: GiosgClient, mocked: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/giosg-ca.pem")
    mocked.get(ME_URL, json={"id": "u1"})
    client.check_credentials()
    sent = mocked.calls[0].request.req_kwargs  # type: ignore[attr-defined]
    assert sent["proxies"]["https"] == "http://proxy.test:3128"
    assert sent["verify"] == "/etc/ssl/giosg-ca.pem"


def test_no_proxy_for_the_apis_host(
    client: GiosgClient, mocked: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    monkeypatch.setenv("NO_PROXY", "giosg.test")
    mocked.get(ME_URL, json={"id": "u1"})
    client.check_credentials()
    assert "https" not in mocked.calls[0].request.req_kwargs["proxies"]  # type: ignore[attr-defined]


def test_the_environment_is_read_once_per_session_not_per_call(
    client: GiosgClient, mocked: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = []
    real = requests.utils.get_environ_proxies

    def counted(url: str, no_proxy: str | None = None) -> dict[str, str]:
        reads.append(url)
        return real(url, no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counted)
    mocked.get(ME_URL, json={"id": "u1"})
    for _ in range(3):
        client.check_credentials()
    assert reads == [BASE]


def test_close_drops_the_session(client: GiosgClient) -> None:
    session = client._get_session()
    client.close()
    assert client._get_session() is not session


def test_a_past_retry_after_date_without_a_zone_means_now(
    client: GiosgClient, mocked: responses.RequestsMock, clock: FakeClock
) -> None:
    mocked.post(
        VARIABLES_URL, status=503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 -0000"}
    )
    mocked.post(VARIABLES_URL, status=201)
    client.set_variable(ROOM, VISITOR, "username", "Alice")
    assert clock.sleeps == [0.0]


def test_an_unknown_status_is_named_as_such(
    client: GiosgClient, mocked: responses.RequestsMock
) -> None:
    mocked.post(VARIABLES_URL, status=499, body="")
    with pytest.raises(GiosgAPIError, match="giosg answered 499 unexpected status"):
        client.set_variable(ROOM, VISITOR, "username", "")


def test_a_pause_is_on_the_clients_clock(client: GiosgClient, clock: FakeClock) -> None:
    """What waits for something besides giosg (the visitor's lease) waits on the same clock as
    the deadlines: a test's fake clock moves."""
    deadline = client.deadline_after(1.0)
    client.pause(0.25)
    assert clock.sleeps == [0.25]
    assert client.time_left(deadline) == 0.75
