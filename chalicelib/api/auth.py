"""Bearer JWT (HS256) authentication.

Claims: `sub` (user) and `tenant`, each 1-64 of letters, digits, `.`, `_`, `-`; `exp`
(required, at most `TokenPolicy.max_lifetime_s` after `iat`, or after now without `iat`);
optional `roles`; `iss` and `aud` checked when the deployment configures them."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Mapping, Optional

from chalicelib.api.errors import ForbiddenError, UnauthorizedError
from chalicelib.domain.numbers import shown_number
from chalicelib.domain.tokens import TokenPolicy

__all__ = ["TokenPolicy", "Principal", "authenticate", "issue_token"]

ALGORITHM = "HS256"
# Tenants jobpipe keeps for itself (maintenance tasks run as "_system"); no token may claim one.
RESERVED_TENANT_PREFIX = "_"
# Tenant and user names become parts of storage keys: no separator, no whitespace, bounded.
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")

# Roles. `operator` runs the pipeline: every /api/system/* route (statistics and dead letters
# of all tenants, redrive, maintenance tasks). Any other role a token carries (an identity
# service's `admin`, say) grants nothing: every other route serves the token's tenant alike.
OPERATOR = "operator"


@dataclass(frozen=True)
class Principal:
    user: str
    tenant: str
    roles: frozenset[str] = field(default_factory=frozenset)

    def require_role(self, role: str) -> None:
        """Raises ForbiddenError unless the token carries `role`."""
        if role not in self.roles:
            raise ForbiddenError(f"this operation needs the {role!r} role")


def is_valid_name(value: object) -> bool:
    """A tenant or user name as tokens may carry it (fullmatch: no trailing newline slips by)."""
    return isinstance(value, str) and NAME_PATTERN.fullmatch(value) is not None


def authenticate(headers: Mapping[str, str], policy: TokenPolicy) -> Principal:
    """The token's principal; raises UnauthorizedError for a missing, malformed, expired,
    too long-lived or badly signed token, or one whose claims are not valid names."""
    header = headers.get("authorization") or headers.get("Authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError("missing bearer token: send 'Authorization: Bearer <JWT>'")
    if not token.isascii():  # PyJWT encodes the token first: a lone surrogate would raise there
        raise UnauthorizedError("invalid token: a JWT is ASCII (base64url parts joined by '.')")
    # Imported on the first request: PyJWT pulls in cryptography, which no event function needs.
    import jwt

    required = ["exp", "sub", "tenant"] + [c for c, v in (("iss", policy.issuer), ("aud", policy.audience)) if v]
    try:
        claims = jwt.decode(
            token.strip(), policy.secret, algorithms=[ALGORITHM],
            issuer=policy.issuer or None, audience=policy.audience or None, leeway=policy.leeway_s,
            options={"require": required, "verify_aud": bool(policy.audience)},
        )
    except jwt.ExpiredSignatureError as exc:
        raise UnauthorizedError("token has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise UnauthorizedError(f"invalid token: {exc}") from exc
    _check_lifetime(claims, policy)
    user, tenant, roles = claims.get("sub"), claims.get("tenant"), claims.get("roles", [])
    if not is_valid_name(user) or not is_valid_name(tenant):
        raise UnauthorizedError("token claims 'sub' and 'tenant' must be 1-64 letters, digits, '.', '_' or '-'")
    if tenant.startswith(RESERVED_TENANT_PREFIX):
        raise UnauthorizedError(f"tenant names starting with {RESERVED_TENANT_PREFIX!r} are reserved")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise UnauthorizedError("token claim 'roles' must be a list of strings")
    return Principal(user=user, tenant=tenant, roles=frozenset(roles))


def _is_numeric_date(value: object) -> bool:
    """A NumericDate is a JSON number (RFC 7519 2). PyJWT also takes text it can read as an int
    ("1700000000"), and a bool is an int to Python: neither is a time to us."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_lifetime(claims: Mapping[str, object], policy: TokenPolicy) -> None:
    exp, iat = claims["exp"], claims.get("iat")
    if not all(_is_numeric_date(claims[c]) for c in ("exp", "iat", "nbf") if c in claims):
        raise UnauthorizedError("invalid token: 'exp', 'iat' and 'nbf' must be numeric dates (JSON numbers)")
    start = iat if iat is not None else time.time()
    try:
        lifetime = exp - start  # type: ignore[operator]
    except OverflowError:  # an int date past any float (10**400): no clock reaches it
        lifetime = float("inf")
    if lifetime > policy.max_lifetime_s + policy.leeway_s:
        raise UnauthorizedError(
            f"token lives longer than the {shown_number(policy.max_lifetime_s)} s this deployment allows"
        )


def issue_token(
    secret: str, *, user: str, tenant: str, roles: Optional[list[str]] = None, ttl_s: int = 12 * 3600,
    issuer: Optional[str] = None, audience: Optional[str] = None,
) -> str:
    """A signed token for development and tests."""
    import jwt  # as in authenticate: only where tokens are made

    now = int(time.time())
    claims: dict[str, object] = {"sub": user, "tenant": tenant, "roles": roles or [], "iat": now, "exp": now + ttl_s}
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
