"""Login throttling per account and per client address (the ``limits`` library, moving windows).

Only failures count. Once an account or an address has used up its failures in the window, further attempts
are refused *before* the password is checked, so 100 guesses followed by the right password still fail, and
the person gets a clear "try again in N minutes". A successful login clears the account's count. The storage
is ``memory://`` by default (one process); several replicas share one via e.g. ``redis://`` (the ``limits``
storage URI in ``STREETWATCH_LOGIN_THROTTLE_STORAGE``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

_MESSAGES = {
    "en": "Too many failed logins {scope}. Try again in {minutes} minute(s).",
    "vi": "Đăng nhập sai quá nhiều lần {scope}. Hãy thử lại sau {minutes} phút.",
}
_SCOPES = {
    "en": {"account": "for this account", "address": "from this address"},
    "vi": {"account": "với tài khoản này", "address": "từ địa chỉ này"},
}


@dataclass(frozen=True)
class Refusal:
    """Why a login attempt is refused without checking the password."""

    scope: str  # "account" | "address"
    retry_after_s: int

    def message(self, lang: str) -> str:
        lang = lang if lang in _MESSAGES else "en"
        minutes = max(1, math.ceil(self.retry_after_s / 60))
        return _MESSAGES[lang].format(scope=_SCOPES[lang][self.scope], minutes=minutes)


class LoginThrottle:
    """Counts failed logins per account and per address; refuses once either limit is reached."""

    def __init__(self, per_account: str, per_address: str, storage_uri: str = "memory://") -> None:
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))
        self._account: RateLimitItem = parse(per_account)
        self._address: RateLimitItem = parse(per_address)

    def _keys(self, username: str, address: str) -> list[tuple[str, RateLimitItem, str]]:
        return [
            ("account", self._account, f"account:{username.strip().lower()[:64]}"),
            ("address", self._address, f"address:{address}"),
        ]

    def check(self, username: str, address: str) -> Refusal | None:
        """A refusal when the account or the address has no failures left in its window."""
        for scope, item, key in self._keys(username, address):
            if not self._limiter.test(item, "login", key):
                stats = self._limiter.get_window_stats(item, "login", key)
                return Refusal(scope, max(1, math.ceil(stats.reset_time - time.time())))
        return None

    def failed(self, username: str, address: str) -> None:
        for _scope, item, key in self._keys(username, address):
            self._limiter.hit(item, "login", key)

    def succeeded(self, username: str) -> None:
        self._limiter.clear(self._account, "login", f"account:{username.strip().lower()[:64]}")
