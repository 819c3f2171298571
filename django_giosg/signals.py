"""Signals for host projects: a binding was attached, was detached, or gave up.

All are sent with ``sender=VisitorLink`` after the link's new state is saved:

- ``visitor_attached(link, result)``: the variables are set (``result`` is a
  :class:`~django_giosg.services.Result`).
- ``visitor_detached(link, result)``: the chats are ended and the variables deleted.
- ``visitor_failed(link, action, error)``: after ``SWEEP_MAX_ATTEMPTS`` failed attempts of
  ``action`` (``"attach"`` or ``"detach"``) the link is ``failed``; sent once. ``error`` is the
  recorded text (no token, no variable values).
"""

from django.dispatch import Signal

visitor_attached = Signal()
visitor_detached = Signal()
visitor_failed = Signal()
