"""The README's "Testing your project" example, run verbatim in a project of its own: a
newcomer copies it, so it must pass as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADING = "### The `giosg_simulator` pytest fixture"


def readme_example() -> str:
    """The first ```python block after the fixture's heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(HEADING) :]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, f"no python block under {HEADING!r}"
    return found.group(1)


@pytest.mark.slow
def test_the_readme_example_passes_as_written(pytester: pytest.Pytester) -> None:
    example = readme_example()
    assert "..." not in example  # complete, nothing left for the reader to fill in
    pytester.makepyfile(test_readme_example=example)
    # The suite's test site is the host project: its settings, URLs and login views.
    pytester.makeini(f"[pytest]\npythonpath = {ROOT}\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--ds=tests.settings")
    result.assert_outcomes(passed=example.count("\ndef test_"))
