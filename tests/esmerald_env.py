"""Whether Esmerald can run here: the one skip shared by the tests that need it.

Esmerald's last release (3.9.4) fails on every request with Lilya 0.24 and
later, and Ravyn needs Lilya >= 0.27.1, so Esmerald cannot share the main
test environment: the `esmerald` entry of `.ci/matrix` gives it a venv of its
own and sets `TETHER_REQUIRE_ESMERALD=1`, so there a broken install fails
instead of skipping.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version

import pytest

MATRIX = "it runs in its own venv: `TETHER_MATRIX=esmerald bash .ci/matrix`"


def _lilya_below_0_24() -> bool:
    major, minor = (int(part) for part in version("lilya").split(".")[:2])
    return (major, minor) < (0, 24)


def skip_reason() -> str | None:
    """Why Esmerald cannot run in this environment, or `None` when it can."""
    try:
        version("esmerald")
    except PackageNotFoundError:
        return f"Esmerald is not installed; {MATRIX}"
    if not _lilya_below_0_24():
        return (
            f"Esmerald 3.9.4 fails on every request with Lilya {version('lilya')} "
            f"(it needs Lilya < 0.24); {MATRIX}"
        )
    return None


def skip_without_esmerald(*, module: bool = False) -> None:
    """Skip the calling test (or module) unless Esmerald can run, or the matrix requires it."""
    reason = skip_reason()
    if reason is not None and not os.environ.get("TETHER_REQUIRE_ESMERALD"):
        pytest.skip(reason, allow_module_level=module)
