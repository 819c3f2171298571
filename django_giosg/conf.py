"""The one place where ``settings.GIOSG`` is read.

:func:`get_settings` turns the ``GIOSG`` dict into a frozen, typed, validated
:class:`GiosgSettings` with defaults. It reads lazily (on first use, not at import) and is reset
whenever ``override_settings`` or anything else sends ``setting_changed`` for ``GIOSG``. A missing
or invalid value raises :class:`~django_giosg.errors.GiosgConfigurationError` naming the exact key,
for example ``GIOSG["ROOM_IDS"]``.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string
from django.views.decorators.debug import sensitive_variables

from .errors import GiosgConfigurationError

DEFAULT_API_BASE_URL = "https://service.giosg.com"
DEFAULT_VARIABLES = "django_giosg.variables.default_variables"
EXAMPLE_UUID = "9ae65e7d-56c5-11e5-af8d-6c4008c08dfe"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
#: The longest ``SETTLE_DELAY``: writes that land later than a day are not waited for.
SETTLE_DELAY_MAX = 86400
#: ``MAX_CONNECTIONS`` when it is not set: as many connections as four workflows use at once.
CONNECTIONS_PER_WORKER = 4
#: What an API token may be: it goes into an HTTP header, where anything else fails the call (and
#: an exception of the HTTP library would carry the header, token and all).
TOKEN_PATTERN = re.compile(r"[\x21-\x7e]+")
HEADER_SAFE_RULE = (
    "must be printable ASCII without spaces (a token read from a file or an environment "
    "variable may end with a newline: strip it)"
)

VariablesCallable = Callable[[Any], Mapping[str, object] | None]


class _Invalid(ValueError):
    """Raised by a parser; :func:`load` adds the key's name."""


@dataclass(frozen=True)
class GiosgSettings:
    """The validated ``GIOSG`` settings. Durations are seconds unless the name says otherwise."""

    enabled: bool = True
    api_token: str = field(default="", repr=False)  # never shown
    organization_id: str = ""
    room_ids: tuple[str, ...] = ()
    api_base_url: str = DEFAULT_API_BASE_URL
    loader_url: str = ""
    variables: str | VariablesCallable = DEFAULT_VARIABLES
    use_browser_rooms: bool = False
    timeout: tuple[float, float] = (3.05, 10.0)
    max_workers: int = 8
    #: :func:`load` gives it ``CONNECTIONS_PER_WORKER`` times ``MAX_WORKERS`` when it is not set.
    max_connections: int = 32
    max_retries: int = 3
    retry_after_cap: float = 30.0
    inline_budget: float = 2.0
    rooms_cache_ttl: int = 300
    visitor_id_pattern: re.Pattern[str] = re.compile(r"[0-9a-f]{32}")
    capture_max_body: int = 2048
    capture_rate: int = 10
    #: ``None``: no limit per user. :func:`load` gives it ``CAPTURE_RATE`` when it is not set.
    user_capture_rate: int | None = 10
    capture_wait_ms: int = 15000
    expiry_refresh: int = 60
    expiry_grace: int = 300
    sweep_max_attempts: int = 10
    sweep_backoff: float = 60.0
    #: Links one sweep works at once, each in a thread of its own (1: one after another).
    sweep_concurrency: int = 4
    pending_stale_after: int = 600
    settle_delay: int = 300
    prune_after_days: int = 30

    def variables_callable(self) -> VariablesCallable:
        """The ``VARIABLES`` callable, importing it if it was given as a dotted path."""
        if callable(self.variables):
            return self.variables
        try:
            function = import_string(self.variables)
        except ImportError as err:
            raise GiosgConfigurationError(
                f'GIOSG["VARIABLES"] = {self.variables!r} cannot be imported: {err}'
            ) from err
        if not callable(function):
            raise GiosgConfigurationError(
                f'GIOSG["VARIABLES"] = {self.variables!r} is not callable'
            )
        return function  # type: ignore[no-any-return]


# -- parsers: each takes the raw value and returns the typed one, or raises _Invalid ----------


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"must be True or False, not {value!r}")
    return value


def _whole(minimum: int) -> Callable[[object], int]:
    """A parser of whole numbers of at least ``minimum`` (0 or 1)."""

    def parse(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"must be an integer, not {type(value).__name__}")
        if value < minimum:
            raise _Invalid(
                f"must be greater than 0, not {value}"
                if minimum == 1
                else f"must be {minimum} or greater, not {value}"
            )
        return value

    return parse


_positive_int = _whole(1)
_non_negative_int = _whole(0)


def _positive_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(f"must be a number of seconds, not {type(value).__name__}")
    if not value > 0:  # also rejects NaN
        raise _Invalid(f"must be greater than 0, not {value}")
    return float(value)


def _optional_positive_int(value: object) -> int | None:
    if value is None:
        return None
    try:
        return _positive_int(value)
    except _Invalid as err:
        raise _Invalid(f"{err} (or None to turn it off)") from None


def _settle_delay(value: object) -> int:
    seconds = _positive_int(value)
    if seconds > SETTLE_DELAY_MAX:
        raise _Invalid(f"must be at most {SETTLE_DELAY_MAX} seconds (a day), not {seconds}")
    return seconds


def _non_empty_str(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid("must be a non-empty string")
    return value


def _token(value: object) -> str:
    text = _non_empty_str(value)
    if not TOKEN_PATTERN.fullmatch(text):
        raise _Invalid(HEADER_SAFE_RULE)  # (the message never shows the token)
    return text


def _uuid(value: object) -> str:
    text = _non_empty_str(value)
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        raise _Invalid(f"must be a UUID such as {EXAMPLE_UUID!r}, not {text!r}") from None
    if str(parsed) != text.lower():  # reject braces, 'urn:uuid:' and undashed forms
        raise _Invalid(f"must be a UUID in its dashed form, not {text!r}")
    return text.lower()


def _uuid_list(value: object) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise _Invalid("must be a list of room UUIDs")
    if not value:
        raise _Invalid("must name at least one room")
    rooms: list[str] = []
    for index, item in enumerate(value):
        try:
            room = _uuid(item)
        except _Invalid as err:
            raise _Invalid(f"item {index} {err}") from None
        if room not in rooms:
            rooms.append(room)
    return tuple(rooms)


def _https_url(value: object, example: str) -> str:
    """An https URL, or http on this machine (the simulator): anything else would send the token
    (``API_BASE_URL``) or load the page's script (``LOADER_URL``) in the clear, or from
    anywhere (a ``data:`` or ``javascript:`` URL)."""
    text = _non_empty_str(value)
    try:
        parts = urlsplit(text)
        hostname = parts.hostname
    except ValueError:  # an unbalanced "[" or the like
        hostname = None
    if not hostname or parts.scheme not in {"http", "https"}:
        raise _Invalid(f"must be an http(s) URL such as {example!r}, not {text!r}")
    if parts.scheme == "http" and hostname not in LOCAL_HOSTS:
        raise _Invalid(
            f"may use http only for localhost, 127.0.0.1 or [::1]; use https for {hostname!r}"
        )
    if parts.username or parts.password:
        raise _Invalid("must not contain credentials")
    return text


def _base_url(value: object) -> str:
    text = _https_url(value, DEFAULT_API_BASE_URL)
    parts = urlsplit(text)
    if parts.query or parts.fragment:
        raise _Invalid("must not contain a query or a fragment")
    return text.rstrip("/")


def _loader_url(value: object) -> str:
    return _https_url(value, f"{DEFAULT_API_BASE_URL}/live2/{EXAMPLE_UUID}")


def _variables(value: object) -> str | VariablesCallable:
    if callable(value):
        return value
    if isinstance(value, str) and value.strip():
        return value
    raise _Invalid("must be a callable or the dotted path of one")


def _timeout(value: object) -> tuple[float, float]:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise _Invalid("must be a number of seconds or a (connect, read) pair")
        connect, read = value
        return (_positive_float(connect), _positive_float(read))
    seconds = _positive_float(value)
    return (seconds, seconds)


def _regex(value: object) -> re.Pattern[str]:
    text = _non_empty_str(value)
    try:
        return re.compile(text)
    except re.error as err:
        raise _Invalid(f"is not a valid regular expression: {err}") from None


# key -> (attribute, parser); the defaults are GiosgSettings' own.
_PARSERS: dict[str, tuple[str, Callable[[object], object]]] = {
    "ENABLED": ("enabled", _bool),
    "API_TOKEN": ("api_token", _token),
    "ORGANIZATION_ID": ("organization_id", _uuid),
    "ROOM_IDS": ("room_ids", _uuid_list),
    "API_BASE_URL": ("api_base_url", _base_url),
    "LOADER_URL": ("loader_url", _loader_url),
    "VARIABLES": ("variables", _variables),
    "USE_BROWSER_ROOMS": ("use_browser_rooms", _bool),
    "TIMEOUT": ("timeout", _timeout),
    "MAX_WORKERS": ("max_workers", _positive_int),
    "MAX_CONNECTIONS": ("max_connections", _positive_int),
    "MAX_RETRIES": ("max_retries", _non_negative_int),
    "RETRY_AFTER_CAP": ("retry_after_cap", _positive_float),
    "INLINE_BUDGET": ("inline_budget", _positive_float),
    "ROOMS_CACHE_TTL": ("rooms_cache_ttl", _non_negative_int),
    "VISITOR_ID_PATTERN": ("visitor_id_pattern", _regex),
    "CAPTURE_MAX_BODY": ("capture_max_body", _positive_int),
    "CAPTURE_RATE": ("capture_rate", _positive_int),
    "USER_CAPTURE_RATE": ("user_capture_rate", _optional_positive_int),
    "CAPTURE_WAIT_MS": ("capture_wait_ms", _positive_int),
    "EXPIRY_REFRESH": ("expiry_refresh", _positive_int),
    "EXPIRY_GRACE": ("expiry_grace", _positive_int),
    "SWEEP_MAX_ATTEMPTS": ("sweep_max_attempts", _positive_int),
    "SWEEP_BACKOFF": ("sweep_backoff", _positive_float),
    "SWEEP_CONCURRENCY": ("sweep_concurrency", _positive_int),
    "PENDING_STALE_AFTER": ("pending_stale_after", _positive_int),
    "SETTLE_DELAY": ("settle_delay", _settle_delay),
    "PRUNE_AFTER_DAYS": ("prune_after_days", _positive_int),
}
KNOWN_KEYS = frozenset(_PARSERS)
REQUIRED_WHEN_ENABLED = ("API_TOKEN", "ORGANIZATION_ID", "ROOM_IDS")


def _key(name: str) -> str:
    return f'GIOSG["{name}"]'


@sensitive_variables("raw", "values")  # the token: hidden from error reports without DEBUG
def load(raw: object) -> GiosgSettings:
    """Validate a ``GIOSG`` dict. Unknown keys are ignored here (a system check warns of them)."""
    if not isinstance(raw, Mapping):
        raise GiosgConfigurationError(f"GIOSG must be a dict, not {type(raw).__name__}")
    values: dict[str, Any] = {}
    for name, (attribute, parse) in _PARSERS.items():
        if name not in raw:
            continue
        try:
            values[attribute] = parse(raw[name])
        except _Invalid as err:
            raise GiosgConfigurationError(f"{_key(name)} {err}") from None
    enabled = values.get("enabled", True)
    if enabled:
        for name in REQUIRED_WHEN_ENABLED:
            if name not in raw:
                raise GiosgConfigurationError(
                    f"{_key(name)} is required while GIOSG is enabled "
                    f'(set GIOSG["ENABLED"] = False to turn the integration off)'
                )
    refresh = values.get("expiry_refresh", GiosgSettings.expiry_refresh)
    grace = values.get("expiry_grace", GiosgSettings.expiry_grace)
    if grace < refresh:
        raise GiosgConfigurationError(
            f"{_key('EXPIRY_GRACE')} ({grace}) must be at least "
            f"{_key('EXPIRY_REFRESH')} ({refresh})"
        )
    workers = values.get("max_workers", GiosgSettings.max_workers)
    if "MAX_CONNECTIONS" not in raw:
        values["max_connections"] = CONNECTIONS_PER_WORKER * workers
    elif values["max_connections"] < workers:
        raise GiosgConfigurationError(
            f"{_key('MAX_CONNECTIONS')} ({values['max_connections']}) must be at least "
            f"{_key('MAX_WORKERS')} ({workers}{'' if 'MAX_WORKERS' in raw else ', the default'})"
        )
    if "USER_CAPTURE_RATE" not in raw:
        values["user_capture_rate"] = values.get("capture_rate", GiosgSettings.capture_rate)
    if "loader_url" not in values and values.get("organization_id"):
        base = values.get("api_base_url", DEFAULT_API_BASE_URL)
        values["loader_url"] = f"{base}/live2/{values['organization_id']}"
    return GiosgSettings(**values)


_lock = threading.Lock()
_cached: GiosgSettings | None = None


def get_settings() -> GiosgSettings:
    """The current validated settings, read on first use and cached until ``GIOSG`` changes."""
    global _cached
    with _lock:
        if _cached is None:
            _cached = load(getattr(django_settings, "GIOSG", {}))
        return _cached


def reset() -> None:
    """Forget the cached settings; the next :func:`get_settings` reads ``settings.GIOSG`` again."""
    global _cached
    with _lock:
        _cached = None


@receiver(setting_changed)
def _on_setting_changed(*, setting: str, **kwargs: object) -> None:
    if setting == "GIOSG":
        reset()
