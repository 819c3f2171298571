"""A response about one browser is never cached for another.

``{% giosg_capture %}`` puts the session's visitor id in the page and ``{% giosg_logout %}`` one
browser's cleanup. Django's cache middleware (the site-wide cache) and ``cache_page`` would store
such a page and hand it to everyone: ``cache_page`` stores the page as soon as the view returns,
before any middleware can mark it. So a tag that renders something of this browser's marks the
request (:func:`keep_private`): both of Django's cache middlewares then skip storing the response
(``request._cache_update_cache``, the flag they both read), and ``GiosgMiddleware`` marks the
response itself (:func:`mark_private`) for the caches outside Django: proxies, CDNs, the browser's
own back-forward cache on shared devices.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import patch_cache_control, patch_vary_headers

_PRIVATE = "_django_giosg_private"


def keep_private(request: HttpRequest) -> None:
    """The response to ``request`` shows something of this browser's: no cache may keep it."""
    request._cache_update_cache = False  # type: ignore[attr-defined]
    setattr(request, _PRIVATE, True)


def kept_private(request: HttpRequest) -> bool:
    """Whether :func:`keep_private` was called for ``request``."""
    return getattr(request, _PRIVATE, False) is True


def mark_private(response: HttpResponseBase) -> None:
    """``Cache-Control: private, no-store`` and ``Vary: Cookie``."""
    patch_vary_headers(response, ("Cookie",))
    patch_cache_control(response, private=True, no_store=True)
