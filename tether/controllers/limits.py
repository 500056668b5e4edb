"""Limits on what one connection may send: size and rate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class RateLimit:
    """At most `messages` per `per` seconds per connection (a token bucket).

    `burst` is how many may arrive at once after a quiet spell (default:
    `messages`). Over the limit, `action="close"` closes with 1008 and
    `action="drop"` silently drops the message and goes on.
    """

    messages: int
    per: float = 1.0
    burst: int | None = None
    action: Literal["close", "drop"] = "close"

    def __post_init__(self) -> None:
        if self.messages <= 0 or self.per <= 0:
            raise ValueError("RateLimit needs messages > 0 and per > 0")
        if self.action not in ("close", "drop"):
            raise ValueError(f"RateLimit.action must be 'close' or 'drop', got {self.action!r}")


class TokenBucket:
    """One connection's bucket for a `RateLimit`."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, limit: RateLimit, now: float) -> None:
        self.capacity = float(limit.burst or limit.messages)
        self.rate = limit.messages / limit.per
        self.tokens = self.capacity
        self.stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; refill by the time passed."""
        tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True


def message_size(message: dict) -> int:
    """The payload size of a received ASGI message, in bytes."""
    text = message.get("text")
    if text is None:
        data = message.get("bytes")
        return 0 if data is None else len(data)
    return len(text.encode()) if not text.isascii() else len(text)
