"""Staff sign-in and sign-out for the web UI."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from doorstep.context import CtxDep
from doorstep.security.deps import OptionalPrincipal
from doorstep.security.sessions import SESSION_COOKIE, SESSION_TTL, create_session, delete_session
from doorstep.security.users import authenticate
from doorstep.web.templating import render

router = APIRouter(tags=["auth"], include_in_schema=False)


def _safe_next(value: str | None) -> str:
    # only local paths: never redirect a signed-in user to another site
    if not value or not value.startswith("/") or value.startswith("//"):
        return "/dashboard"
    return value


@router.get("/login")
def login_page(request: Request, principal: OptionalPrincipal, next: str | None = None) -> Response:
    if principal is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "login.html", next=_safe_next(next), email="", error=None)


@router.post("/login")
def login(
    request: Request,
    ctx: CtxDep,
    email: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str | None, Form()] = None,
) -> Response:
    with ctx.engine.begin() as conn:
        user = authenticate(conn, email=email, password=password)
        if user is None:
            return render(
                request,
                "login.html",
                status_code=401,
                next=_safe_next(next),
                email=email,
                error="Wrong email or password.",
            )
        token, _csrf = create_session(conn, user_id=user.id, now=ctx.clock.now())
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=ctx.settings.public_base_url.startswith("https://"),
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request, ctx: CtxDep, principal: OptionalPrincipal) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token and principal is not None:
        with ctx.engine.begin() as conn:
            delete_session(conn, token=token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/")
def home(principal: OptionalPrincipal) -> Response:
    return RedirectResponse("/dashboard" if principal else "/login", status_code=303)
