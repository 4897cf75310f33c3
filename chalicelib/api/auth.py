"""Bearer JWT (HS256) authentication: claims `sub` (user), `tenant`, `exp`, optional `roles`."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, Optional

import jwt

from chalicelib.api.errors import ForbiddenError, UnauthorizedError

ALGORITHM = "HS256"
# Tenants jobpipe keeps for itself (maintenance tasks run as "_system"); no token may claim one.
RESERVED_TENANT_PREFIX = "_"


@dataclass(frozen=True)
class Principal:
    user: str
    tenant: str
    roles: frozenset[str] = field(default_factory=frozenset)

    def require_role(self, role: str) -> None:
        if role not in self.roles:
            raise ForbiddenError(f"this operation needs the {role!r} role")


def authenticate(headers: Mapping[str, str], secret: str) -> Principal:
    """Raises UnauthorizedError for a missing, malformed, expired or badly signed token."""
    header = headers.get("authorization") or headers.get("Authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError("missing bearer token: send 'Authorization: Bearer <JWT>'")
    try:
        claims = jwt.decode(
            token.strip(), secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "tenant"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise UnauthorizedError("token has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise UnauthorizedError(f"invalid token: {exc}") from exc
    user, tenant, roles = claims.get("sub"), claims.get("tenant"), claims.get("roles", [])
    if not isinstance(user, str) or not user or not isinstance(tenant, str) or not tenant:
        raise UnauthorizedError("token claims 'sub' and 'tenant' must be non-empty strings")
    if tenant.startswith(RESERVED_TENANT_PREFIX):
        raise UnauthorizedError(f"tenant names starting with {RESERVED_TENANT_PREFIX!r} are reserved")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise UnauthorizedError("token claim 'roles' must be a list of strings")
    return Principal(user=user, tenant=tenant, roles=frozenset(roles))


def issue_token(
    secret: str, *, user: str, tenant: str, roles: Optional[list[str]] = None, ttl_s: int = 12 * 3600
) -> str:
    """A signed token for development and tests."""
    now = int(time.time())
    claims = {"sub": user, "tenant": tenant, "roles": roles or [], "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
