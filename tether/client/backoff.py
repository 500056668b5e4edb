"""`Backoff`: how long a client waits before each reconnect attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter and a cap, as Socket.IO and centrifuge-js do it.

    The n-th attempt in a row waits `min(maximum, initial * factor ** (n - 1))`
    seconds, less a random share of up to `jitter` of that (so clients that
    lost the same server do not all come back at once). `max_attempts` failed
    attempts in a row give up (None: never give up).
    """

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.5
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < self.initial or self.factor < 1:
            raise ValueError("Backoff needs 0 <= initial <= maximum and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("Backoff.jitter is a share of the delay, from 0 to 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("Backoff.max_attempts must be at least 1, or None")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt number `attempt` (1 for the first retry)."""
        delay = min(self.maximum, self.initial * self.factor ** max(0, attempt - 1))
        return delay - random.uniform(0, delay * self.jitter)

    def gives_up(self, failures: int) -> bool:
        """Whether `failures` failed attempts in a row are enough."""
        return self.max_attempts is not None and failures >= self.max_attempts
