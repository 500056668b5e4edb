"""The one switch for tether's use of other libraries' private internals.

tether reaches into three places no public API covers, each to save work
on a hot path, and each has a public fallback that behaves the same from
the outside (only slower):

- asyncio's current-task bookkeeping (`tether.brokers._eager`): a publish
  starts an idle member's send at once, as a step of the member's task.
  Fallback: the member's own task wakes and sends, as under trio.
- anyio's per-task cancel-scope records (`tether.controllers._shield`):
  teardown enters a shield only where an anyio cancellation can arrive.
  Fallback: every teardown enters `anyio.CancelScope(shield=True)`.
- Starlette's exception-middleware `send` closure
  (`tether.controllers._passthrough`): a websocket's frames skip it.
  Fallback: every frame goes through the wrapper, as Starlette gives it.

Set the environment variable `TETHER_NO_PRIVATE=1` (read once, when tether
is imported) to turn all three off: for a Python, anyio or Starlette
release whose internals changed before tether caught up, or to rule them
out while chasing a bug. Any of them also turns itself off, alone, where
the installed library no longer has what it reaches for.
"""

from __future__ import annotations

import os

__all__ = ["USE_PRIVATE_INTERNALS"]

USE_PRIVATE_INTERNALS: bool = os.environ.get("TETHER_NO_PRIVATE", "").strip().lower() in (
    "",
    "0",
    "false",
    "no",
)
"""False when `TETHER_NO_PRIVATE` is set (to anything but `0`, `false` or `no`) at import."""
