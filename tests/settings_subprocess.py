"""The settings of a process a test starts (a task worker, a second sweep): the test suite's,
with the test's own values (its database, giosg's address, the task backend) given as JSON in
``DJANGO_GIOSG_TEST_SETTINGS`` (see :func:`tests.processes.shared_settings`)."""

import json
import os

from .settings import *  # noqa: F403

globals().update(json.loads(os.environ.get("DJANGO_GIOSG_TEST_SETTINGS", "{}")))
