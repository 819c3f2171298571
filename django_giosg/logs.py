"""What django-giosg's logs and errors may show of a visitor.

A visitor id is what binds a browser to a user: anyone who reads it in a log can try to post it
as their own. Logs, error messages and recorded errors show it shortened, never in full (the
admin, which the site's staff use to find a link, shows it whole).
"""

from __future__ import annotations

import re

SHOWN = 6  # characters of a visitor id that logs show

# The segment after ``/visitors/`` in a giosg API path.
_VISITOR_IN_PATH = re.compile(r"(/visitors/)([^/?#]+)")


def short_id(visitor_id: str) -> str:
    """``visitor_id`` as logs show it: its first characters, then an ellipsis."""
    return visitor_id[:SHOWN] + "…" if len(visitor_id) > SHOWN else visitor_id


def short_path(path: str) -> str:
    """A giosg API path with its visitor id shortened (see :func:`short_id`)."""
    return _VISITOR_IN_PATH.sub(lambda match: match.group(1) + short_id(match.group(2)), path)
