"""API tokens: 256 random bits, shown once, stored only as a SHA-256 hash.

A token is ``dsp_`` followed by 43 URL-safe characters (32 random bytes). A plain hash
(not Argon2) is right here: the token has full entropy, so nothing can be guessed from
its hash, and the lookup must cost microseconds on every request. Tokens are found by
their hash (an indexed lookup) and never compared as strings, so response timing can
reveal at most bits of a SHA-256 digest, which say nothing about the token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from despina.core.errors import ConfigError

PREFIX = "dsp_"
_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
SCOPE_KINDS = ("group", "deployment")


def new_token() -> str:
    """A fresh token: 32 bytes from the OS's CSPRNG."""
    return PREFIX + secrets.token_urlsafe(32)


def new_token_id() -> str:
    """The public id of a token (what ``token revoke`` takes): not a secret."""
    return "tok_" + secrets.token_hex(6)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_given_token(token: str) -> str:
    """A token a user supplies (``DESPINA_ADMIN_TOKEN``) must be as strong as ours."""
    token = token.strip()
    if len(token) < 32 or any(c.isspace() for c in token):
        raise ConfigError(
            "a supplied token must be at least 32 characters without spaces; generate one "
            "with: python -c 'import secrets; print(\"dsp_\" + secrets.token_urlsafe(32))'"
        )
    return token


#: The longest lifetime a duration may ask for: beyond it a date overflows, and a token
#: that outlives its holder's job is what expiry exists to prevent.
MAX_DURATION = timedelta(days=10 * 365)


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w`` → a timedelta."""
    m = _DURATION.match(text.strip().lower())
    if not m or int(m.group(1)) == 0:
        raise ConfigError(f"cannot read duration {text!r}: use a number and s, m, h, d or w (30d)")
    try:
        duration = timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    except OverflowError:
        duration = MAX_DURATION + timedelta(days=1)
    if duration > MAX_DURATION:
        raise ConfigError(
            f"duration {text!r} is over {MAX_DURATION.days // 365} years; ask for less"
        )
    return duration


@dataclass(frozen=True)
class Scope:
    """A token narrowed to one named task group or deployment."""

    kind: str
    name: str

    @classmethod
    def parse(cls, text: str) -> Scope:
        kind, sep, name = text.partition(":")
        if not sep or kind not in SCOPE_KINDS or not name:
            raise ConfigError(f"cannot read scope {text!r}: use group:NAME or deployment:NAME")
        return cls(kind, name)

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"
