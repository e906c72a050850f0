"""Back-off after failed sign-ins: per account and per client address, in the server process.

After a failed password, the account is locked for 1 s, then 2 s, 4 s, ... up to 15 min
(doubling with every further failure); a client address gets a few free failures first
(several people may share one address) and then the same doubling. While a lock holds,
every attempt for that account or from that address is refused *without* checking the
password, so a correct password does not get in either; a successful sign-in clears the
account's and the address's record. Attempts refused by a lock do not extend it.

Unknown names are counted as known ones are, so a lock never tells whether an account
exists. The state is bounded: at most ``max_entries`` records (oldest evicted first, expired
ones before live ones), names cut to 129 characters, so no stream of made-up names or
addresses can grow it without limit.

This module imports neither Streamlit nor the store.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["BackoffSchedule", "SignInBackoff", "SignInLocked"]

MAX_NAME_KEY = 129  # one more than the longest account name: longer names share a record, none is an account


class SignInLocked(PermissionError):
    """Sign-in refused because of earlier failures; ``retry_after_s`` says when to try again."""

    def __init__(self, retry_after_s: float):
        self.retry_after_s = retry_after_s
        wait = max(1, math.ceil(retry_after_s))
        super().__init__(f"too many failed sign-in attempts; try again in {wait} s")


@dataclass(frozen=True)
class BackoffSchedule:
    """How long a key stays locked after ``n`` failures: nothing for ``free`` of them, then
    ``base_s`` doubling with every further failure, at most ``max_s``."""

    free: int = 0
    base_s: float = 1.0
    max_s: float = 900.0

    def __post_init__(self):
        if self.free < 0 or not (0 < self.base_s <= self.max_s) or not math.isfinite(self.max_s):
            raise ValueError(f"a back-off schedule needs free >= 0 and 0 < base_s <= max_s < inf; got {self!r}")

    def lock_s(self, failures: int) -> float:
        over = failures - self.free
        if over <= 0:
            return 0.0
        return min(self.base_s * 2.0 ** min(over - 1, 64), self.max_s)


@dataclass
class _Record:
    failures: int
    locked_until: float
    last_failure: float


class SignInBackoff:
    """Failed sign-ins counted per account and per address, with locks that double.

    Parameters
    ----------
    account, address : BackoffSchedule
        The schedules (default: account locked from the first failure, address after 4 free ones).
    forget_after_s : float
        A record whose lock ended this long ago is forgotten (default: one hour).
    max_entries : int
        The most records kept (accounts and addresses together).
    clock : callable
        Seconds, monotonic (``time.monotonic``); tests pass their own.
    """

    def __init__(self, *, account: BackoffSchedule = BackoffSchedule(free=0),
                 address: BackoffSchedule = BackoffSchedule(free=4), forget_after_s: float = 3600.0,
                 max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic):
        if max_entries < 2:
            raise ValueError(f"max_entries must be at least 2; got {max_entries!r}")
        self.schedules = {"account": account, "address": address}
        self.forget_after_s = forget_after_s
        self.max_entries = max_entries
        self.clock = clock
        self._records: OrderedDict[tuple[str, str], _Record] = OrderedDict()  # least recently failed first
        self._lock = threading.Lock()

    @staticmethod
    def _keys(name: str, address: str | None) -> list[tuple[str, str]]:
        keys = [("account", name[:MAX_NAME_KEY])]
        if address:
            keys.append(("address", address[:MAX_NAME_KEY]))
        return keys

    def check(self, name: str, address: str | None = None) -> None:
        """Raise :class:`SignInLocked` when the account or the address is locked now."""
        now = self.clock()
        with self._lock:
            wait = max((r.locked_until - now for k in self._keys(name, address)
                        if (r := self._records.get(k)) is not None), default=0.0)
        if wait > 0:
            raise SignInLocked(wait)

    def failed(self, name: str, address: str | None = None) -> tuple[int, float]:
        """Record a failure; returns the account's failure count and how long it is locked now."""
        now = self.clock()
        out = (0, 0.0)
        with self._lock:
            for key in self._keys(name, address):
                rec = self._records.pop(key, None)
                if rec is None or now - rec.locked_until > self.forget_after_s:
                    rec = _Record(0, now, now)
                rec.failures += 1
                rec.last_failure = now
                rec.locked_until = now + self.schedules[key[0]].lock_s(rec.failures)
                self._records[key] = rec  # to the end: the most recently failed
                if key[0] == "account":
                    out = (rec.failures, rec.locked_until - now)
            self._bound(now)
        return out

    def succeeded(self, name: str, address: str | None = None) -> None:
        """Forget the account's and the address's failures."""
        with self._lock:
            for key in self._keys(name, address):
                self._records.pop(key, None)

    def __len__(self) -> int:
        return len(self._records)

    def _bound(self, now: float) -> None:
        if len(self._records) <= self.max_entries:
            return
        for key in [k for k, r in self._records.items() if now - r.locked_until > self.forget_after_s]:
            del self._records[key]
        while len(self._records) > self.max_entries:
            self._records.popitem(last=False)  # the least recently failed
