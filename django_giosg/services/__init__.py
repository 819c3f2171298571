"""The workflows over a :class:`~django_giosg.client.GiosgClient`, and the ``VisitorLink`` rows.

Services know giosg's workflows and django-giosg's records, not HTTP: every call goes through the
client, which raises :class:`~django_giosg.errors.GiosgError` for anything that went wrong. One
module per job:

- :mod:`.links`: the rows' changes entry points ask for (bind, release, reset, expiry);
- :mod:`.workflows`: what giosg gets (attach, detach), under the visitor's lease (:mod:`.leases`),
  its calls run at once in a :mod:`.pool`, its failures counted with backoff (:mod:`.failures`);
- :mod:`.rooms`: the organization's rooms, cached, and which it owns;
- :mod:`.variables`: the ``VARIABLES`` contract;
- :mod:`.sweep`: expired and due links, and pruning;
- :mod:`.results`: what one attach or detach did.
"""

from .results import Result

__all__ = ["Result"]
