"""The HTTP client for the giosg REST API v5 endpoints django-giosg uses.

It knows HTTP and giosg, nothing of users or sessions. One process-wide :class:`GiosgClient`
(:func:`get_client`) keeps one ``requests.Session`` so that connections are reused (keep-alive),
with cookies disabled and a connection pool of ``MAX_CONNECTIONS``; a forked child builds its own
session instead of sharing the parent's sockets.

However many requests and workflows run at once in the process, at most ``pool_size`` calls are
in flight: a call waits for a free connection (within its deadline). So the pool never opens more
connections than it keeps, and never discards one (urllib3's "Connection pool is full"), which
against giosg's HTTPS would mean a fresh TLS handshake for a later call.

Every call has a timeout and its own retry loop (429, 500, 502, 503, 504, connection errors and
timeouts; exponential backoff with jitter; ``Retry-After`` honoured up to ``RETRY_AFTER_CAP``).
A 429 pauses the whole process, not only the call that got it: every call waits until the pause
giosg asked for is over (up to ``RETRY_AFTER_CAP``), or ends unsent if its deadline comes first
(:class:`~django_giosg.errors.GiosgUnavailable`, "deadline exceeded").
The loop lives here rather than in urllib3's ``Retry``, which does not retry POST or PATCH by
default and honours ``Retry-After`` only for some statuses. All giosg writes used here are
idempotent (a re-POSTed key overwrites, ending an ended chat changes nothing), so retrying a call
whose answer was lost is safe. A ``deadline`` bounds a whole call, retries included, where a socket
timeout only bounds each read.

A write whose answer never came may have happened, and may still happen later, after later
calls: each write counts its attempts of unknown outcome (:attr:`Sent.uncertain`, and
:attr:`GiosgError.uncertain <django_giosg.errors.GiosgError.uncertain>` when it fails), so that
the services can undo or redo what may land late.

Nothing here logs or puts into an exception the API token or a variable's value, and no frame of
an error's traceback holds the token (Django's error reports show the frames' variables while
``DEBUG`` is on; with it off, the values sent are hidden as ``sensitive_variables``).
"""

from __future__ import annotations

import email.utils
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from http.cookiejar import DefaultCookiePolicy
from types import TracebackType
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import requests
from django.views.decorators.debug import sensitive_variables
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError

from . import __version__
from .clock import backoff
from .conf import HEADER_SAFE_RULE, TOKEN_PATTERN, GiosgSettings, get_settings
from .errors import (
    GiosgAPIError,
    GiosgAuthError,
    GiosgConfigurationError,
    GiosgError,
    GiosgNotFound,
    GiosgRateLimited,
    GiosgUnavailable,
)
from .logs import short_path

logger = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Answers after which a write may have happened all the same: a gateway in front of giosg gave up
#: waiting for giosg's answer, not giosg on the work. (500 and 503 are giosg's own "not done".)
GATEWAY_GAVE_UP = frozenset({502, 504})
USER_AGENT = f"django-giosg/{__version__}"
BODY_EXCERPT = 500
REDACTED = "***"


@dataclass(frozen=True)
class Room:
    """A room from the organization's room list. ``is_shared``: shared *to* the organization."""

    id: str
    organization_id: str | None
    is_shared: bool
    name: str

    def is_owned_by(self, organization_id: str) -> bool:
        """Whether ``organization_id`` owns the room, so that its token may end the room's chats
        and set variables there: not shared to it, and not listed with another owner (a room
        listed without an owner counts as the organization's own)."""
        return not self.is_shared and self.organization_id in (None, organization_id)


@dataclass(frozen=True)
class Chat:
    """A chat; ``room_organization_id`` is the organization owning the chat's room."""

    id: str
    room_organization_id: str | None
    is_ended: bool

    def is_owned_by(self, organization_id: str) -> bool:
        """Whether ``organization_id`` owns the chat's room, so that its token may end the chat
        (a chat listed without the room's owner counts as the organization's own)."""
        return self.room_organization_id in (None, organization_id)


@dataclass(frozen=True)
class Sent:
    """A write giosg answered as done. ``uncertain``: earlier attempts of it that got no answer
    (a timeout, a connection lost after sending, a gateway's 502 or 504). Each may still take
    effect at giosg, late, after anything done since."""

    uncertain: int = 0


class _Reply(NamedTuple):
    response: requests.Response
    uncertain: int


class _TokenAuth(requests.auth.AuthBase):
    """Adds ``Authorization: Token …``; as an auth object it also keeps ``~/.netrc`` out of it."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Token {self._token}"
        return request

    def __repr__(self) -> str:
        return "_TokenAuth(***)"


class GiosgClient:
    """Calls giosg for one organization. Thread-safe: share one instance between threads.

    ``sleep``, ``clock`` and ``random`` are injectable so that tests can check the backoff
    without waiting. A ``deadline`` is a point in time on ``clock`` (see :meth:`deadline_after`).
    """

    def __init__(
        self,
        *,
        api_token: str,
        organization_id: str,
        base_url: str = GiosgSettings.api_base_url,
        timeout: tuple[float, float] = GiosgSettings.timeout,
        max_retries: int = GiosgSettings.max_retries,
        retry_after_cap: float = GiosgSettings.retry_after_cap,
        pool_size: int = GiosgSettings.max_connections,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = random.random,
    ) -> None:
        if not api_token:
            raise GiosgConfigurationError('GIOSG["API_TOKEN"] is required to call giosg')
        if not TOKEN_PATTERN.fullmatch(api_token):
            raise GiosgConfigurationError(f'GIOSG["API_TOKEN"] {HEADER_SAFE_RULE}')
        self._token = api_token
        self.organization_id = organization_id
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_after_cap = retry_after_cap
        self.pool_size = pool_size
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._sleep = sleep
        self._clock = clock
        self._random = random
        self._origin = urlsplit(self.base_url)[:2]
        self._session_lock = threading.Lock()
        self._session: requests.Session | None = None
        self._session_pid = 0
        #: A connection for each call in flight: taken before a request, given back after it.
        self._connections = threading.BoundedSemaphore(pool_size)
        #: No call is sent before this point on ``clock``: giosg answered one of them 429.
        self._quiet_until = -math.inf
        self._quiet_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: GiosgSettings, **overrides: Any) -> GiosgClient:
        """A client configured from the ``GIOSG`` settings."""
        options: dict[str, Any] = {
            "api_token": settings.api_token,
            "organization_id": settings.organization_id,
            "base_url": settings.api_base_url,
            "timeout": settings.timeout,
            "max_retries": settings.max_retries,
            "retry_after_cap": settings.retry_after_cap,
            "pool_size": settings.max_connections,
        }
        options.update(overrides)
        return cls(**options)

    def __repr__(self) -> str:
        return f"<GiosgClient {self.base_url} org={self.organization_id}>"

    def __enter__(self) -> GiosgClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections (a later call opens new ones)."""
        with self._session_lock:
            if self._session is not None and self._session_pid == os.getpid():
                self._session.close()
            self._session = None

    def deadline_after(self, seconds: float) -> float:
        """The deadline ``seconds`` from now, for the ``deadline`` argument of the calls."""
        return self._clock() + seconds

    def time_left(self, deadline: float) -> float:
        """Seconds until ``deadline`` (negative once it has passed)."""
        return deadline - self._clock()

    def pause(self, seconds: float) -> None:
        """Wait on the client's clock: its own sleep, which a test replaces, so that a wait for
        something else (the visitor's lease) moves the same clock as its deadline."""
        self._sleep(seconds)

    # -- the endpoints ------------------------------------------------------------------------

    @sensitive_variables("value")
    def set_variable(
        self,
        room_id: str,
        visitor_id: str,
        key: str,
        value: str,
        *,
        deadline: float | None = None,
        max_retries: int | None = None,
    ) -> Sent:
        """Set one visitor variable in one room (giosg takes one key per call)."""
        return self._write(
            "POST",
            self._url("rooms", room_id, "visitors", visitor_id, "variables"),
            json={"key": key, "value": value},
            expected=(200, 201),
            secrets=(value,),
            deadline=deadline,
            max_retries=max_retries,
        )

    def delete_variable(
        self,
        room_id: str,
        visitor_id: str,
        key: str,
        *,
        deadline: float | None = None,
        max_retries: int | None = None,
    ) -> Sent:
        """Delete one visitor variable; raises :class:`GiosgNotFound` when it is already gone."""
        return self._write(
            "DELETE",
            self._url("rooms", room_id, "visitors", visitor_id, "variables", key),
            expected=(200, 204),
            deadline=deadline,
            max_retries=max_retries,
        )

    def iter_rooms(
        self, *, deadline: float | None = None, max_retries: int | None = None
    ) -> Iterator[Room]:
        """The organization's rooms, shared ones included, yielded as each page arrives."""
        return self._paginate(self._url("rooms"), None, _room, deadline, max_retries)

    def iter_open_chats(
        self,
        room_id: str,
        visitor_id: str,
        *,
        deadline: float | None = None,
        max_retries: int | None = None,
    ) -> Iterator[Chat]:
        """The visitor's open chats in a room. ``is_ended=false`` is asked for and also checked
        here, in case the server ignores the filter."""
        url = self._url("rooms", room_id, "visitors", visitor_id, "chats")
        chats = self._paginate(url, {"is_ended": "false"}, _chat, deadline, max_retries)
        return (chat for chat in chats if not chat.is_ended)

    def end_chat(
        self, chat_id: str, *, deadline: float | None = None, max_retries: int | None = None
    ) -> Sent:
        """End (and so lock) a chat in a room the organization owns."""
        return self._write(
            "PATCH",
            self._url("owned_chats", chat_id),
            json={"is_ended": True},
            expected=(200, 204),
            deadline=deadline,
            max_retries=max_retries,
        )

    def get_chat(
        self, chat_id: str, *, deadline: float | None = None, max_retries: int | None = None
    ) -> Chat:
        """Read one chat of the organization's own rooms (to check whether it has ended)."""
        url = self._url("owned_chats", chat_id)
        response = self._request(
            "GET", url, expected=(200,), deadline=deadline, max_retries=max_retries
        )
        return self._parse(response, "GET", url, _chat)

    def check_credentials(
        self, *, deadline: float | None = None, max_retries: int | None = None
    ) -> dict[str, Any]:
        """The token's user (``GET /api/v5/users/me``): the cheapest proof that the token works."""
        url = f"{self.base_url}/api/v5/users/me"
        response = self._request(
            "GET", url, expected=(200,), deadline=deadline, max_retries=max_retries
        )
        return self._parse(response, "GET", url, dict)

    # -- HTTP ---------------------------------------------------------------------------------

    def _url(self, *segments: str) -> str:
        """The URL of an organization resource; each segment (an id, a key) is quoted."""
        quoted = "/".join(quote(segment, safe="") for segment in segments)
        return f"{self.base_url}/api/v5/orgs/{quote(self.organization_id, safe='')}/{quoted}"

    def _get_session(self) -> requests.Session:
        pid = os.getpid()
        with self._session_lock:
            if self._session is None or self._session_pid != pid:
                # After fork() the parent's pooled sockets must not be shared, nor its count of
                # connections in use by threads the child does not have: start afresh.
                if self._session_pid != pid:  # (a lock held by a thread the child lacks)
                    self._quiet_lock = threading.Lock()
                self._session = self._new_session()
                self._session_pid = pid
                self._connections = threading.BoundedSemaphore(self.pool_size)
            return self._session

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self.pool_size, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})
        session.auth = _TokenAuth(self._token)
        # The environment's proxies and CA bundle (``HTTPS_PROXY``, ``NO_PROXY``,
        # ``REQUESTS_CA_BUNDLE`` …) are read once, for the API's host, which every call goes to:
        # requests would read the whole environment twice per call, a fifth of a call's CPU.
        environment = session.merge_environment_settings(self.base_url, {}, None, None, None)
        session.proxies.update(environment["proxies"])
        session.verify = environment["verify"]
        session.trust_env = False
        return session

    @sensitive_variables("json", "secrets")
    def _write(
        self,
        method: str,
        url: str,
        *,
        expected: Collection[int],
        json: object = None,
        secrets: tuple[str, ...] = (),
        deadline: float | None,
        max_retries: int | None,
    ) -> Sent:
        """A call that changes something at giosg: what it knows of its attempts."""
        reply = self._call(
            method,
            url,
            expected=expected,
            json=json,
            secrets=secrets,
            deadline=deadline,
            max_retries=max_retries,
        )
        return Sent(reply.uncertain)

    def _request(
        self,
        method: str,
        url: str,
        *,
        expected: Collection[int],
        params: Mapping[str, str] | None = None,
        deadline: float | None,
        max_retries: int | None,
    ) -> requests.Response:
        """A call that only reads."""
        return self._call(
            method,
            url,
            expected=expected,
            params=params,
            deadline=deadline,
            max_retries=max_retries,
        ).response

    @sensitive_variables("json", "secrets")
    def _call(
        self,
        method: str,
        url: str,
        *,
        expected: Collection[int],
        json: object = None,
        params: Mapping[str, str] | None = None,
        secrets: tuple[str, ...] = (),
        deadline: float | None,
        max_retries: int | None,
    ) -> _Reply:
        """One call with its retries; a :class:`GiosgError` unless the status is expected. Both
        carry the number of attempts of unknown outcome (of a write: a read has no effect that
        could land late)."""
        path = _path_of(url)
        retries = self.max_retries if max_retries is None else max_retries
        writes = method != "GET"
        uncertain = 0
        attempt = 0
        while True:
            error: GiosgError
            retry_after: float | None = None
            try:
                session = self._get_session()
                connections = self._connections  # (the child's own, after a fork)
                self._take_connection(connections, deadline, method, path)
                try:
                    response = session.request(
                        method,
                        url,
                        json=json,
                        params=params,
                        timeout=self._timeout(deadline, method, path),
                        allow_redirects=False,
                    )
                finally:
                    connections.release()
            except GiosgError as err:  # not sent: the deadline came first (or a pause)
                raise _counted(err, uncertain) from None
            except requests.RequestException as err:
                error = _unavailable(err, method, path)
                uncertain += writes and _may_have_arrived(err)
            else:
                status = response.status_code
                if status in expected:
                    return _Reply(response, uncertain)
                uncertain += writes and status in GATEWAY_GAVE_UP
                retry_after = _retry_after(response.headers.get("Retry-After"))
                error = self._error(response, method, path, (self._token, *secrets), retry_after)
                if status not in RETRYABLE_STATUSES:
                    raise _counted(error, uncertain)
            delay = retry_after
            if isinstance(error, GiosgRateLimited):
                delay = self._backoff(attempt + 1) if delay is None else delay
                self._keep_quiet(min(delay, self.retry_after_cap))
            if attempt >= retries:
                raise _counted(error, uncertain)
            if retry_after is not None and retry_after > self.retry_after_cap:
                # giosg asks for a longer pause than a caller here may wait
                raise _counted(error, uncertain)
            attempt += 1
            delay = self._backoff(attempt) if delay is None else delay
            if deadline is not None and self._clock() + delay >= deadline:
                raise _counted(error, uncertain)
            logger.warning(
                "giosg %s %s failed (%s); retry %d of %d in %.2f s",
                method,
                path,
                _reason(error),
                attempt,
                retries,
                delay,
            )
            self._sleep(delay)

    def _keep_quiet(self, seconds: float) -> None:
        """giosg answered 429: no call of this process is sent for ``seconds``. Its other calls
        in flight (other threads, other workflows) back off with this one, rather than each
        finding out for itself with a 429 of its own."""
        with self._quiet_lock:
            self._quiet_until = max(self._quiet_until, self._clock() + seconds)

    def _take_connection(
        self,
        connections: threading.BoundedSemaphore,
        deadline: float | None,
        method: str,
        path: str,
    ) -> None:
        """A connection to send on, once giosg's pause (:meth:`_keep_quiet`) is over: a pause
        that began while the call waited for the connection is waited out too."""
        while True:
            self._wait_while_quiet(deadline, method, path)
            if not connections.acquire(timeout=self._wait_for_connection(deadline)):
                raise GiosgUnavailable(
                    "deadline exceeded (waiting for a free connection)", method=method, path=path
                )
            if self._quiet_until <= self._clock():
                return
            connections.release()

    def _wait_while_quiet(self, deadline: float | None, method: str, path: str) -> None:
        """Wait until giosg's pause is over, however often another 429 makes it longer; a call
        whose deadline comes first ends at once, unsent, with
        :class:`~django_giosg.errors.GiosgUnavailable` (as one that cannot get a connection in
        time: giosg answered nothing)."""
        while (wait := self._quiet_until - self._clock()) > 0:
            if deadline is not None and self._clock() + wait >= deadline:
                raise GiosgUnavailable(
                    f"deadline exceeded (not sent: giosg asked for a pause, {wait:.2f} s more)",
                    method=method,
                    path=path,
                )
            logger.debug("giosg %s %s waits %.2f s: giosg asked for a pause", method, path, wait)
            self._sleep(wait)

    def _wait_for_connection(self, deadline: float | None) -> float | None:
        """How long a call may wait for a free connection: until its deadline, if it has one."""
        return None if deadline is None else max(deadline - self._clock(), 0.0)

    def _timeout(self, deadline: float | None, method: str, path: str) -> tuple[float, float]:
        if deadline is None:
            return self.timeout
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise GiosgUnavailable("deadline exceeded", method=method, path=path)
        connect, read = self.timeout
        return (min(connect, remaining), min(read, remaining))

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: base × 2^(attempt−1) × U[0.5, 1.5), capped."""
        return backoff(attempt, self.backoff_base, self.backoff_max, self._random())

    @staticmethod
    def _error(
        response: requests.Response,
        method: str,
        path: str,
        secrets: tuple[str, ...],
        retry_after: float | None,
    ) -> GiosgError:
        status = response.status_code
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "unexpected status"
        message = f"giosg answered {status} {phrase}"
        if status >= 500:
            return GiosgUnavailable(message, method=method, path=path, status=status)
        body = _redact(response.text, secrets)[:BODY_EXCERPT]
        if status == 429:
            return GiosgRateLimited(
                message, method=method, path=path, body=body, retry_after=retry_after
            )
        kind: type[GiosgAPIError] = GiosgAPIError
        if status in (401, 403):
            kind = GiosgAuthError
        elif status == 404:
            kind = GiosgNotFound
        return kind(message, method=method, path=path, status=status, body=body)

    def _parse(
        self,
        response: requests.Response,
        method: str,
        url: str,
        parse: Callable[[dict[str, Any]], T],
    ) -> T:
        """Read a JSON object from the response; anything else is a :class:`GiosgAPIError`."""
        try:
            data = response.json()
        except ValueError:
            data = None
        try:
            return parse(_object(data))
        except ValueError as err:
            body = _redact(response.text, (self._token,))[:BODY_EXCERPT]
            raise _bad_response(str(err), method, url, response.status_code, body) from None

    def _paginate(
        self,
        url: str,
        params: Mapping[str, str] | None,
        parse: Callable[[dict[str, Any]], T],
        deadline: float | None,
        max_retries: int | None,
    ) -> Iterator[T]:
        """Yield a collection's items page by page, following ``next`` exactly as returned.

        A ``next`` that leaves the API's host is refused (it would receive the token), and so
        is one already visited (a loop).
        """
        seen = {url}
        next_url: str | None = url
        while next_url is not None:
            url = next_url
            response = self._request(
                "GET",
                url,
                params=params,
                expected=(200,),
                deadline=deadline,
                max_retries=max_retries,
            )
            params = None  # a next URL carries its own query
            results, next_url = self._parse(response, "GET", url, _collection)
            status = response.status_code
            for item in results:
                try:
                    parsed = parse(_object(item))
                except ValueError as err:
                    raise _bad_response(str(err), "GET", url, status) from None
                yield parsed
            if next_url is not None:
                next_url = urljoin(url, next_url)
                if urlsplit(next_url)[:2] != self._origin:
                    raise _bad_response("a next page on another host", "GET", url, status)
                if next_url in seen:
                    raise _bad_response("a pagination loop", "GET", url, status)
                seen.add(next_url)


def _bad_response(what: str, method: str, url: str, status: int, body: str = "") -> GiosgAPIError:
    return GiosgAPIError(
        f"giosg sent {what}", method=method, path=_path_of(url), status=status, body=body
    )


def _object(data: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError("a body or item that is not a JSON object")
    return data


def _collection(page: dict[str, Any]) -> tuple[list[object], str | None]:
    results, next_url = page.get("results"), page.get("next")
    if not isinstance(results, list) or not isinstance(next_url, (str, type(None))):
        raise ValueError("a page that is not a giosg collection")
    return results, next_url or None


def _required_str(item: Mapping[str, Any], name: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"an item without {name!r}")
    return value


def _optional_str(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value if isinstance(value, str) else None


def _room(item: Mapping[str, Any]) -> Room:
    return Room(
        id=_required_str(item, "id"),
        organization_id=_optional_str(item, "organization_id"),
        is_shared=item.get("is_shared") is True,
        name=_optional_str(item, "name") or "",
    )


def _chat(item: Mapping[str, Any]) -> Chat:
    return Chat(
        id=_required_str(item, "id"),
        room_organization_id=_optional_str(item, "room_organization_id"),
        is_ended=item.get("is_ended") is True,
    )


def _unavailable(err: requests.RequestException, method: str, path: str) -> GiosgUnavailable:
    """The error of a call that got no answer. The transport's exception is named, not chained:
    its traceback's frames hold the request's headers (the token) and body (the values), and
    Django's error reports show every frame's variables while ``DEBUG`` is on."""
    what = "timed out" if isinstance(err, requests.Timeout) else "connection failed"
    return GiosgUnavailable(f"giosg {what} ({type(err).__name__})", method=method, path=path)


def _counted(error: GiosgError, uncertain: int) -> GiosgError:
    error.uncertain = uncertain
    return error


def _may_have_arrived(err: requests.RequestException) -> bool:
    """Whether a request that got no answer may have reached giosg (and had its effect): anything
    but a connection that never opened (refused, timed out while connecting, its TLS handshake
    failed). urllib3 reports those as a ``MaxRetryError`` (this client's adapter retries
    nothing); it raises an error while sending or reading (a reset, a timeout, a TLS error) as
    it is."""
    if isinstance(err, requests.ConnectTimeout):
        return False
    cause = err.args[0] if err.args else None
    return not isinstance(cause, MaxRetryError)


def _path_of(url: str) -> str:
    """The path and query of a URL: what errors and logs show (never a host's credentials, and
    the visitor id shortened)."""
    parts = urlsplit(url)
    return short_path(parts.path) + (f"?{parts.query}" if parts.query else "")


def _retry_after(header: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), if readable."""
    if not header:
        return None
    header = header.strip()
    try:
        seconds = float(header)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def _reason(error: GiosgError) -> str:
    return f"HTTP {error.status}" if error.status is not None else error.message


_client_lock = threading.Lock()
_client: tuple[GiosgSettings, GiosgClient] | None = None


def get_client() -> GiosgClient:
    """The process-wide client for the current settings (rebuilt when ``GIOSG`` changes)."""
    global _client
    settings = get_settings()
    with _client_lock:
        if _client is None or _client[0] is not settings:
            if _client is not None:
                _client[1].close()
            _client = (settings, GiosgClient.from_settings(settings))
        return _client[1]
