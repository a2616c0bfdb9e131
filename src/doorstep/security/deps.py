"""FastAPI dependencies for authentication and authorisation.

Staff arrive with a session cookie (and a CSRF token on unsafe methods); machines with
`Authorization: Bearer sk_...`. Both become a Principal; `require(...)` checks scope or role.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from doorstep.context import AppContext, get_ctx
from doorstep.errors import Forbidden, Unauthenticated
from doorstep.security.keys import find_key
from doorstep.security.model import Principal, Role, Scope
from doorstep.security.sessions import SESSION_COOKIE, load_session

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
KEY_CACHE_TTL_S = 30.0  # a revoked key stops working within this time


def _principal_from_key(ctx: AppContext, key: str) -> Principal | None:
    cache: dict[str, tuple[float, Principal | None]] = ctx.cache.setdefault("secret_keys", {})
    hit = cache.get(key)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    with ctx.read_engine.connect() as conn:
        row = find_key(conn, key)
    principal = None
    if row is not None and row.kind == "secret":
        principal = Principal(kind="key", id=row.id, name=row.name, role=None, scopes=frozenset(row.scopes))
    cache[key] = (time.monotonic() + KEY_CACHE_TTL_S, principal)
    return principal


async def optional_principal(request: Request) -> Principal | None:
    ctx = get_ctx(request)
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        principal = _principal_from_key(ctx, auth[7:].strip())
        if principal is None:
            raise Unauthenticated("the API key is unknown or revoked; create one with `doorstep keys create`")
        return principal
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    with ctx.read_engine.connect() as conn:
        row = load_session(conn, token=token, now=ctx.clock.now())
    if row is None:
        return None
    if request.method in UNSAFE_METHODS:
        sent = request.headers.get("x-csrf-token")
        if sent is None and "form" in request.headers.get("content-type", ""):
            form = await request.form()
            value = form.get("csrf_token")
            sent = value if isinstance(value, str) else None
        import hmac

        if not sent or not hmac.compare_digest(sent, row.csrf_token):
            raise Forbidden("missing or wrong CSRF token: reload the page and try again")
    request.state.csrf_token = row.csrf_token
    role = Role(row.role)
    from doorstep.security.model import ROLE_SCOPES

    return Principal(
        kind="user", id=row.id, name=row.name or row.email, role=role, scopes=frozenset(ROLE_SCOPES[role])
    )


async def current_principal(principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
    if principal is None:
        raise Unauthenticated(
            "sign in at /login, or send `Authorization: Bearer <secret key>` (create one with `doorstep keys create`)"
        )
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]


def require(*, scope: Scope | None = None, roles: tuple[Role, ...] = ()) -> Callable[..., Any]:
    """A dependency that admits principals with `scope`, or (users) one of `roles` (admins always)."""

    async def dependency(principal: CurrentPrincipal) -> Principal:
        if roles and principal.has_role(*roles):
            return principal
        if scope is not None and principal.has_scope(scope):
            return principal
        wanted = " or ".join(
            [f"scope {scope}"] * (scope is not None) + [f"role {', '.join(roles)}"] * bool(roles)
        )
        raise Forbidden(f"{principal.name} may not do this: it needs {wanted}")

    return dependency
