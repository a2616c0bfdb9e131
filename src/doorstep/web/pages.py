"""Helpers for staff pages: sign-in redirects instead of JSON errors for browsers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import Depends, Request

from doorstep.errors import DoorstepError
from doorstep.security.deps import optional_principal
from doorstep.security.model import Principal, Role


class LoginRequired(DoorstepError):
    """Raised by staff pages for anonymous browsers; app.py turns it into a redirect to /login."""

    status = 303


def staff_page(*roles: Role) -> Callable[..., Any]:
    """A dependency for HTML pages: anonymous users are sent to /login, others need one of `roles`."""

    async def dependency(
        request: Request, principal: Principal | None = Depends(optional_principal)
    ) -> Principal:
        if principal is None:
            raise LoginRequired("sign in first", location=f"/login?next={quote(str(request.url.path))}")
        if roles and not principal.has_role(*roles):
            from doorstep.errors import Forbidden

            raise Forbidden(
                f"{principal.name} ({principal.role}) may not open this page; it needs {', '.join(roles)}"
            )
        request.state.principal = principal
        return principal

    return dependency
