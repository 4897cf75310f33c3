"""What an API token must satisfy besides its signature (the composition root builds it from
the settings; chalicelib/api/auth.py checks tokens against it)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from chalicelib.defaults import TOKEN_LEEWAY_S, TOKEN_MAX_LIFETIME_S


@dataclass(frozen=True)
class TokenPolicy:
    secret: str
    max_lifetime_s: int = TOKEN_MAX_LIFETIME_S
    issuer: Optional[str] = None
    audience: Optional[str] = None
    leeway_s: int = TOKEN_LEEWAY_S
