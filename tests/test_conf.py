"""The settings reader: defaults, every key's validation, laziness and reset."""

from __future__ import annotations

import re
import secrets
from typing import Any

import pytest
import responses
from django.test import override_settings
from django.views.debug import ExceptionReporter

from django_giosg import conf
from django_giosg.client import GiosgClient
from django_giosg.conf import GiosgSettings, get_settings, load
from django_giosg.errors import GiosgConfigurationError, GiosgUnavailable

from .conftest import BASE, ORG, ROOM, FakeClock

REQUIRED: dict[str, Any] = {"API_TOKEN": "t0k", "ORGANIZATION_ID": ORG, "ROOM_IDS": [ROOM]}


def with_(**values: Any) -> dict[str, Any]:
    return {**REQUIRED, **values}


def test_defaults() -> None:
    settings = load(REQUIRED)
    assert settings == GiosgSettings(
        enabled=True,
        api_token="t0k",
        organization_id=ORG,
        room_ids=(ROOM,),
        api_base_url="https://service.giosg.com",
        loader_url=f"https://service.giosg.com/live2/{ORG}",
        variables="django_giosg.variables.default_variables",
        use_browser_rooms=False,
        timeout=(3.05, 10.0),
        max_workers=8,
        max_connections=32,
        max_retries=3,
        retry_after_cap=30.0,
        inline_budget=2.0,
        rooms_cache_ttl=300,
        visitor_id_pattern=re.compile(r"[0-9a-f]{32}"),
        capture_max_body=2048,
        capture_rate=10,
        capture_wait_ms=15000,
        expiry_refresh=60,
        expiry_grace=300,
        sweep_max_attempts=10,
        sweep_backoff=60.0,
        pending_stale_after=600,
        settle_delay=300,
        prune_after_days=30,
    )


@pytest.mark.parametrize("key", ["API_TOKEN", "ORGANIZATION_ID", "ROOM_IDS"])
def test_required_keys_while_enabled(key: str) -> None:
    raw = {name: value for name, value in REQUIRED.items() if name != key}
    with pytest.raises(GiosgConfigurationError, match=re.escape(f'GIOSG["{key}"] is required')):
        load(raw)


def test_nothing_is_required_while_disabled() -> None:
    settings = load({"ENABLED": False})
    assert settings.enabled is False
    assert settings.api_token == ""
    assert settings.room_ids == ()
    assert settings.loader_url == ""


def test_given_values_are_still_validated_while_disabled() -> None:
    with pytest.raises(GiosgConfigurationError, match=r'GIOSG\["ROOM_IDS"\]'):
        load({"ENABLED": False, "ROOM_IDS": "not-a-list"})


def test_ids_are_lower_cased_and_rooms_deduplicated() -> None:
    settings = load(with_(ORGANIZATION_ID=ORG.upper(), ROOM_IDS=[ROOM.upper(), ROOM]))
    assert settings.organization_id == ORG
    assert settings.room_ids == (ROOM,)


def test_loader_url_follows_the_base_url_unless_given() -> None:
    local = load(with_(API_BASE_URL="http://127.0.0.1:8765/"))
    assert local.api_base_url == "http://127.0.0.1:8765"
    assert local.loader_url == f"http://127.0.0.1:8765/live2/{ORG}"
    assert load(with_(LOADER_URL="https://cdn.test/x.js")).loader_url == "https://cdn.test/x.js"


@pytest.mark.parametrize(
    "url",
    ["http://localhost:8000", "http://127.0.0.1", "http://[::1]:9000", "https://api.giosg.com"],
)
def test_allowed_base_urls(url: str) -> None:
    assert load(with_(API_BASE_URL=url)).api_base_url == url


def test_the_rate_per_user_follows_the_rate_per_session_unless_given() -> None:
    assert load(with_()).user_capture_rate == 10
    assert load(with_(CAPTURE_RATE=4)).user_capture_rate == 4
    assert load(with_(CAPTURE_RATE=4, USER_CAPTURE_RATE=20)).user_capture_rate == 20
    assert load(with_(USER_CAPTURE_RATE=None)).user_capture_rate is None


def test_max_connections_defaults_to_four_workflows_worth() -> None:
    assert load(with_()).max_connections == 32
    assert load(with_(MAX_WORKERS=3)).max_connections == 12
    assert load(with_(MAX_WORKERS=3, MAX_CONNECTIONS=3)).max_connections == 3


def test_max_connections_below_max_workers_is_refused() -> None:
    """A workflow's calls at once would wait for each other's connections."""
    message = 'GIOSG["MAX_CONNECTIONS"] (4) must be at least GIOSG["MAX_WORKERS"] (8, the default)'
    with pytest.raises(GiosgConfigurationError, match=re.escape(message)):
        load(with_(MAX_CONNECTIONS=4))
    message = 'GIOSG["MAX_CONNECTIONS"] (4) must be at least GIOSG["MAX_WORKERS"] (5)'
    with pytest.raises(GiosgConfigurationError, match=re.escape(message)):
        load(with_(MAX_CONNECTIONS=4, MAX_WORKERS=5))


@pytest.mark.parametrize(
    "url",
    [
        f"https://service.giosg.com/live2/{ORG}",
        "http://localhost:8000/live2/x?visitor_id=1",
        "http://[::1]:9000/live2/x",
    ],
)
def test_allowed_loader_urls(url: str) -> None:
    assert load(with_(LOADER_URL=url)).loader_url == url


def test_a_timeout_number_applies_to_connect_and_read() -> None:
    assert load(with_(TIMEOUT=5)).timeout == (5.0, 5.0)
    assert load(with_(TIMEOUT=[1, 2.5])).timeout == (1.0, 2.5)


def test_small_values_are_valid() -> None:
    settings = load(with_(SWEEP_BACKOFF=0.01, INLINE_BUDGET=0.1, ROOMS_CACHE_TTL=0))
    assert (settings.sweep_backoff, settings.inline_budget, settings.rooms_cache_ttl) == (
        0.01,
        0.1,
        0,
    )


def test_max_retries_zero_means_one_try_and_no_retry(
    mocked: responses.RequestsMock, clock: FakeClock
) -> None:
    settings = load(with_(MAX_RETRIES=0, API_BASE_URL=BASE))
    assert settings.max_retries == 0
    mocked.get(f"{BASE}/api/v5/orgs/{ORG}/rooms", status=503)
    client = GiosgClient.from_settings(settings, sleep=clock.sleep, clock=clock)
    with client, pytest.raises(GiosgUnavailable):
        list(client.iter_rooms())
    assert len(mocked.calls) == 1
    assert clock.sleeps == []


def site_variables(user: object) -> dict[str, object]:
    return {"plan": "gold"}


def test_variables_accepts_a_callable_or_a_dotted_path() -> None:
    assert load(with_(VARIABLES=site_variables)).variables_callable() is site_variables
    dotted = load(with_(VARIABLES="tests.test_conf.site_variables"))
    assert dotted.variables_callable() is site_variables


@pytest.mark.parametrize(
    ("path", "message"),
    [("no_such_module.fn", "cannot be imported"), ("django_giosg.conf.KNOWN_KEYS", "callable")],
)
def test_a_bad_variables_path_names_the_key_when_used(path: str, message: str) -> None:
    settings = load(with_(VARIABLES=path))
    with pytest.raises(GiosgConfigurationError, match=rf'GIOSG\["VARIABLES"\].*{message}'):
        settings.variables_callable()


INVALID: list[tuple[str, Any, str]] = [
    ("ENABLED", "yes", "must be True or False"),
    ("API_TOKEN", "", "non-empty string"),
    ("API_TOKEN", 1234, "non-empty string"),
    ("ORGANIZATION_ID", "not-a-uuid", "must be a UUID"),
    ("ORGANIZATION_ID", "7f9e9580095b42c7838cc04e667b26f7", "dashed form"),
    ("ORGANIZATION_ID", None, "non-empty string"),
    ("ROOM_IDS", ROOM, "list of room UUIDs"),
    ("ROOM_IDS", [], "at least one room"),
    ("ROOM_IDS", [ROOM, "nope"], "item 1 must be a UUID"),
    ("ROOM_IDS", {ROOM}, "list of room UUIDs"),
    ("API_BASE_URL", "http://giosg.example.com", "http only for localhost"),
    ("API_BASE_URL", "ftp://localhost", "http(s) URL"),
    ("API_BASE_URL", "service.giosg.com", "http(s) URL"),
    ("API_BASE_URL", "https://user:pw@service.giosg.com", "credentials"),
    ("API_BASE_URL", "https://service.giosg.com/?x=1", "query"),
    ("API_BASE_URL", "https://[::1", "http(s) URL"),
    ("USER_CAPTURE_RATE", 0, "greater than 0"),
    ("USER_CAPTURE_RATE", "10", "must be an integer, not str (or None to turn it off)"),
    ("LOADER_URL", 42, "non-empty string"),
    ("LOADER_URL", "data:text/javascript,alert(1)", "http(s) URL"),
    ("LOADER_URL", "javascript:alert(1)", "http(s) URL"),
    ("LOADER_URL", "//cdn.example.com/loader.js", "http(s) URL"),
    ("LOADER_URL", "/static/loader.js", "http(s) URL"),
    ("LOADER_URL", "http://cdn.example.com/loader.js", "http only for localhost"),
    ("LOADER_URL", "http://127.0.0.1.evil.example/live2/x", "http only for localhost"),
    ("LOADER_URL", "https://user:pw@service.giosg.com/live2/x", "credentials"),
    ("VARIABLES", 42, "callable or the dotted path"),
    ("VARIABLES", "", "callable or the dotted path"),
    ("USE_BROWSER_ROOMS", 1, "must be True or False"),
    ("TIMEOUT", 0, "greater than 0"),
    ("TIMEOUT", (1, 2, 3), "(connect, read) pair"),
    ("TIMEOUT", (1, -2), "greater than 0"),
    ("TIMEOUT", "10", "number of seconds"),
    ("TIMEOUT", True, "number of seconds"),
    ("MAX_WORKERS", 0, "greater than 0"),
    ("MAX_WORKERS", 2.5, "must be an integer"),
    ("MAX_WORKERS", True, "must be an integer"),
    ("MAX_RETRIES", -1, "0 or greater"),
    ("MAX_RETRIES", 1.0, "must be an integer"),
    ("RETRY_AFTER_CAP", 0, "greater than 0"),
    ("RETRY_AFTER_CAP", float("nan"), "greater than 0"),
    ("INLINE_BUDGET", -0.5, "greater than 0"),
    ("INLINE_BUDGET", "2", "number of seconds"),
    ("ROOMS_CACHE_TTL", -1, "0 or greater"),
    ("ROOMS_CACHE_TTL", 1.5, "must be an integer"),
    ("VISITOR_ID_PATTERN", "[0-9a-f", "not a valid regular expression"),
    ("VISITOR_ID_PATTERN", 5, "non-empty string"),
    ("CAPTURE_MAX_BODY", 0, "greater than 0"),
    ("CAPTURE_RATE", "10", "must be an integer"),
    ("CAPTURE_WAIT_MS", -5, "greater than 0"),
    ("EXPIRY_REFRESH", 0, "greater than 0"),
    ("EXPIRY_GRACE", 0, "greater than 0"),
    ("SWEEP_MAX_ATTEMPTS", 0, "greater than 0"),
    ("SWEEP_BACKOFF", 0.0, "greater than 0"),
    ("SWEEP_CONCURRENCY", 0, "greater than 0"),
    ("SWEEP_CONCURRENCY", 2.0, "must be an integer"),
    ("PENDING_STALE_AFTER", None, "must be an integer"),
    ("SETTLE_DELAY", 0, "must be greater than 0"),
    ("SETTLE_DELAY", 86401, "must be at most 86400 seconds"),
    ("MAX_CONNECTIONS", 0, "must be greater than 0"),
    ("PRUNE_AFTER_DAYS", 0, "greater than 0"),
]


def test_every_key_has_an_invalid_case() -> None:
    assert {key for key, _, _ in INVALID} == conf.KNOWN_KEYS


@pytest.mark.parametrize(("key", "value", "message"), INVALID)
def test_an_invalid_value_names_the_exact_key(key: str, value: Any, message: str) -> None:
    with pytest.raises(GiosgConfigurationError) as caught:
        load(with_(**{key: value}))
    text = str(caught.value)
    assert text.startswith(f'GIOSG["{key}"] ')
    assert message in text


def test_expiry_grace_must_cover_the_refresh_interval() -> None:
    with pytest.raises(GiosgConfigurationError, match=r'GIOSG\["EXPIRY_GRACE"\] \(60\)'):
        load(with_(EXPIRY_REFRESH=120, EXPIRY_GRACE=60))
    assert load(with_(EXPIRY_REFRESH=120, EXPIRY_GRACE=120)).expiry_grace == 120


def test_giosg_must_be_a_dict() -> None:
    with pytest.raises(GiosgConfigurationError, match="GIOSG must be a dict, not list"):
        load([])


def test_unknown_keys_are_not_an_error_here() -> None:
    assert load(with_(NOT_A_SETTING=1)).api_token == "t0k"


def test_the_token_may_be_any_printable_ascii_without_spaces() -> None:
    token = "Ab9-_.~!#$%&'*+/=?^`|{}[]:;<>,@()"
    assert load(with_(API_TOKEN=token)).api_token == token


@pytest.mark.parametrize(
    "token", ["tok\n", " tok", "to k", "tök", "tok\t", "tok\x00", "tok\u2028"]
)
def test_a_token_that_cannot_go_into_a_header_names_the_key_not_the_token(token: str) -> None:
    with pytest.raises(GiosgConfigurationError) as caught:
        load(with_(API_TOKEN=token))
    assert str(caught.value).startswith('GIOSG["API_TOKEN"] must be printable ASCII')
    assert "tok" not in str(caught.value).replace("token", "")


def test_settings_are_read_lazily_cached_and_reset_on_change() -> None:
    first = get_settings()
    assert get_settings() is first
    with override_settings(GIOSG=with_(MAX_WORKERS=3)):
        assert get_settings().max_workers == 3
    assert get_settings().max_workers == 8
    assert get_settings() is not first


def test_other_setting_changes_keep_the_cache() -> None:
    first = get_settings()
    with override_settings(USE_I18N=False):
        assert get_settings() is first


def test_a_missing_giosg_setting_names_the_first_required_key() -> None:
    from django.conf import settings

    with override_settings():
        del settings.GIOSG
        conf.reset()
        with pytest.raises(GiosgConfigurationError, match=r'GIOSG\["API_TOKEN"\] is required'):
            get_settings()
    conf.reset()


def test_an_invalid_setting_raises_on_first_use_not_at_import() -> None:
    with (
        override_settings(GIOSG={"ENABLED": "no"}),
        pytest.raises(GiosgConfigurationError, match=r'GIOSG\["ENABLED"\]'),
    ):
        get_settings()


#: Made at run time: the reports show the source lines around each frame.
SECRET = f"tok-{secrets.token_hex(8)}"


def invalid_settings() -> GiosgConfigurationError:
    """The error of settings with :data:`SECRET` as the token (no frame here holds it)."""
    try:
        load({**REQUIRED, "API_TOKEN": SECRET, "ROOM_IDS": "not a list"})
    except GiosgConfigurationError as error:
        return error
    raise AssertionError("the settings were accepted")


def test_an_invalid_setting_is_reported_without_the_token_when_debug_is_off() -> None:
    caught = invalid_settings()
    with override_settings(DEBUG=False):
        reporter = ExceptionReporter(None, type(caught), caught, caught.__traceback__)
        reports = [reporter.get_traceback_html(), reporter.get_traceback_text()]
    assert all(SECRET not in report for report in reports)
    assert all("in load" in report for report in reports)  # its frame is there, hidden
