"""``{% load giosg %}``: the three tags of django-giosg, for the base template.

Each renders ``<script src=…>`` tags configured by ``data-`` attributes (no inline JavaScript),
carries the CSP nonce when the page has one (Django 6's ``csp_nonce`` context variable or
django-csp's ``request.csp_nonce``), and renders nothing while ``GIOSG["ENABLED"]`` is false.
The tags that need the request find it in the context (the ``request`` context processor).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from django import template
from django.conf import settings as django_settings
from django.http import HttpRequest
from django.middleware.csrf import get_token
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .. import browser_logout, caching, session
from ..conf import get_settings

logger = logging.getLogger(__name__)
register = template.Library()

NOTHING = SafeString("")


def _nonce(context: template.Context) -> str | None:
    # Not ``if nonce``: Django's LazyNonce is false until something asks for its value.
    nonce = context.get("csp_nonce")
    if nonce is None:
        nonce = getattr(context.get("request"), "csp_nonce", None)
    if nonce is None:
        return None
    return str(nonce) or None


def _script(
    context: template.Context,
    src: str,
    data: Mapping[str, str],
    *,
    loading: Literal["", "async", "defer"],
) -> SafeString:
    """``<script src=… defer|async nonce=… data-…>`` with every value escaped."""
    nonce = _nonce(context)
    return format_html(
        '<script src="{}"{}{}{}></script>',
        src,
        SafeString(f" {loading}") if loading else NOTHING,
        format_html(' nonce="{}"', nonce) if nonce else NOTHING,
        format_html_join("", ' data-{}="{}"', data.items()),
    )


def _active_request(context: template.Context, tag: str) -> HttpRequest | None:
    """The request, when ``tag`` is to render: giosg is enabled and the request is in the
    context (if it is not, the log says how to put it there)."""
    if not get_settings().enabled:
        return None
    request = context.get("request")
    if isinstance(request, HttpRequest):
        return request
    logger.warning(
        "{%% %s %%} needs the request in the template context: add "
        '"django.template.context_processors.request" to the context processors',
        tag,
    )
    return None


def _csrf_header() -> str:
    """``settings.CSRF_HEADER_NAME`` (a ``request.META`` key) as an HTTP header name."""
    name: str = django_settings.CSRF_HEADER_NAME
    name = name.removeprefix("HTTP_")
    return "-".join(part.capitalize() for part in name.split("_"))


@register.simple_tag(takes_context=True)
def giosg_script(context: template.Context) -> SafeString:
    """giosg's loader for the organization, and the command queue it expects."""
    settings = get_settings()
    if not settings.enabled:
        return NOTHING
    parts = urlsplit(settings.loader_url)
    queue = _script(
        context,
        static("django_giosg/queue.js"),
        {
            "organization-id": settings.organization_id,
            "host": f"{parts.scheme}://{parts.netloc}",  # (LOADER_URL is an absolute URL)
        },
        loading="",
    )
    loader = _script(context, settings.loader_url, {}, loading="async")
    return format_html("{}{}", queue, loader)


@register.simple_tag(takes_context=True)
def giosg_capture(context: template.Context) -> SafeString:
    """The script that reports the visitor id to the capture endpoint."""
    request = _active_request(context, "giosg_capture")
    if request is None:
        return NOTHING
    try:
        endpoint = reverse("django_giosg:capture")
    except NoReverseMatch:
        logger.error(
            '{%% giosg_capture %%} needs django-giosg\'s URLs: add path("giosg/", '
            'include("django_giosg.urls")) to the URLconf'
        )
        return NOTHING
    settings = get_settings()
    session_data: Any = getattr(request, "session", {})
    visitor_id = session.get_visitor_id(session_data)
    if visitor_id is not None:
        caching.keep_private(request)  # this browser's id: no cache may hand it to another
    data = {
        "endpoint": endpoint,
        "visitor-id": visitor_id or "",
        "wait-ms": str(settings.capture_wait_ms),
        "csrf-token": get_token(request),
        "csrf-header": _csrf_header(),
    }
    if settings.use_browser_rooms:
        data["send-rooms"] = "true"
    return _script(context, static("django_giosg/capture.js"), data, loading="defer")


@register.simple_tag(takes_context=True)
def giosg_logout(context: template.Context) -> SafeString:
    """After a binding ended, once: the script that closes the chats and clears the widget's
    history, and after a logout also removes the variables (see
    :mod:`django_giosg.browser_logout`)."""
    request = _active_request(context, "giosg_logout")
    if request is None:
        return NOTHING
    cleanup = browser_logout.pending_cleanup(request)
    if cleanup is None:
        return NOTHING
    browser_logout.mark_logout_rendered(request)
    caching.keep_private(request)
    data = {"mode": "logout" if cleanup.remove else "close", "rooms": " ".join(cleanup.rooms)}
    return _script(context, static("django_giosg/logout.js"), data, loading="defer")
