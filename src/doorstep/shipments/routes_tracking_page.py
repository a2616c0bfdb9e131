"""The customer's tracking page: no login. A signed, expiring link (/t/{token}) or a lookup by order number
plus email or postcode (/track), rate limited per IP and per order, answering a wrong email and an unknown
order identically. Actions posted from the page carry the link token and a per-page token bound to a
SameSite cookie."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy import select

from doorstep.context import AppContext, CtxDep
from doorstep.customers.tables import customers
from doorstep.errors import DoorstepError, RateLimited
from doorstep.ids import new_id
from doorstep.ingest.log import LogEntry, append
from doorstep.orders.routes_chain import invoice_link
from doorstep.orders.tables import orders
from doorstep.returns.handlers import LineRequest, policy, request_return
from doorstep.returns.routes import label_link
from doorstep.security import links
from doorstep.shipments.delivery import SAFE_PLACES, StopNotFound
from doorstep.shipments.handlers_lastmile import capabilities, change_delivery, list_slots
from doorstep.shipments.queries_lastmile import load_view
from doorstep.shipments.ratelimit import hit
from doorstep.shipments.tables import proofs_of_delivery, shipments
from doorstep.web.templating import render

router = APIRouter(include_in_schema=False)

LOOKUPS_PER_IP = 10  # per window: a person retyping an email is fine, a script walking order numbers is not
LOOKUPS_PER_ORDER = 5
LOOKUP_WINDOW_S = 15 * 60
ACTIONS_PER_TOKEN = 20  # changes per order per window
PAGE_TOKEN_TTL_S = 2 * 3600
NONCE_COOKIE = "dst_page"
NOT_FOUND_TEXT = "We could not find an order with those details. Check the order number and the email or postcode you used."
# Links in messages point at a section: /t/{token}?action=reschedule opens the slot picker.
PAGE_ACTIONS = {"reschedule", "rebook", "pickup_point", "instructions", "return", "return_label"}
PROBLEM_TOPICS = {
    "not_received": "I can’t find my parcel",
    "damaged": "It arrived damaged",
    "wrong_item": "Wrong item",
    "late": "It is late",
    "other": "Something else",
}


def tracking_link(secret: str, order_id: str) -> str:
    """The path of an order's tracking page: share it in messages (`public_base_url` + this)."""
    return f"/t/{links.sign(secret, 'track', order_id)}"


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _normalise(value: str) -> str:
    return re.sub(r"\s+", "", value).lower()


@router.get("/track")
def track_form(request: Request) -> Response:
    return render(request, "tracking/lookup.html", order_number="", error=None)


@router.post("/track")
def track_lookup(
    request: Request,
    ctx: CtxDep,
    order_number: Annotated[str, Form(max_length=100)] = "",
    contact: Annotated[str, Form(max_length=320)] = "",
) -> Response:
    now = ctx.clock.now()
    order_number = order_number.strip()
    ip_key = hashlib.sha256(_client_ip(request).encode()).hexdigest()[:32]
    with ctx.engine.begin() as conn:
        ip_ok = hit(conn, key=f"track:ip:{ip_key}", limit=LOOKUPS_PER_IP, window_s=LOOKUP_WINDOW_S, now=now)
        order_ok = hit(
            conn,
            key=f"track:order:{order_number.lower()[:100]}",
            limit=LOOKUPS_PER_ORDER,
            window_s=LOOKUP_WINDOW_S,
            now=now,
        )
    if not (ip_ok and order_ok):
        return render(
            request,
            "tracking/lookup.html",
            status_code=429,
            order_number=order_number,
            error="Too many tries. Wait 15 minutes, or use the link in your order confirmation message.",
        )
    if not order_number or not contact.strip():
        return render(
            request,
            "tracking/lookup.html",
            status_code=422,
            order_number=order_number,
            error="Enter your order number and your email or postcode.",
        )
    with ctx.read_engine.connect() as conn:
        row = conn.execute(
            select(orders.c.id, orders.c.ship_postcode, customers.c.email)
            .select_from(orders.join(customers, customers.c.id == orders.c.customer_id))
            .where(orders.c.external_id == order_number)
        ).first()
    given = _normalise(contact)
    # Same work whether or not the order exists: both comparisons always run against something.
    email = _normalise(row.email or "") if row else secrets.token_hex(16)
    postcode = _normalise(row.ship_postcode or "") if row else secrets.token_hex(8)
    matches_email = hmac.compare_digest(given.encode(), email.encode()) if email else False
    matches_postcode = hmac.compare_digest(given.encode(), postcode.encode()) if postcode else False
    if row is None or not (matches_email or matches_postcode):
        return render(
            request, "tracking/lookup.html", status_code=404, order_number=order_number, error=NOT_FOUND_TEXT
        )
    return RedirectResponse(tracking_link(ctx.settings.secret_key, row.id), status_code=303)


def _order_from_token(ctx: AppContext, token: str) -> str:
    return links.verify(ctx.settings.secret_key, "track", token)


def _page_token(ctx: AppContext, order_id: str, nonce: str) -> str:
    return links.sign(ctx.settings.secret_key, "track_action", f"{order_id}:{nonce}")


def _check_page_token(ctx: AppContext, request: Request, order_id: str, page_token: str) -> None:
    nonce = request.cookies.get(NONCE_COOKIE, "")
    try:
        value = links.verify(ctx.settings.secret_key, "track_action", page_token, max_age_s=PAGE_TOKEN_TTL_S)
    except links.BadLink:
        value = ""
    if not nonce or not hmac.compare_digest(value.encode(), f"{order_id}:{nonce}".encode()):
        raise links.BadLink("this page has expired: reload it and try again")


@router.get("/t/{token}")
def tracking_page(
    token: str,
    request: Request,
    ctx: CtxDep,
    done: str | None = None,
    error: str | None = None,
    action: str | None = None,
) -> Response:
    try:
        order_id = _order_from_token(ctx, token)
    except links.BadLink as exc:
        return render(request, "tracking/lookup.html", status_code=403, order_number="", error=exc.detail)
    return _render_page(ctx, request, token, order_id, done=done, error=error, action=action)


def _render_page(
    ctx: AppContext,
    request: Request,
    token: str,
    order_id: str,
    *,
    done: str | None = None,
    error: str | None = None,
    error_field: str | None = None,
    status_code: int = 200,
    action: str | None = None,
) -> Response:
    now = ctx.clock.now()
    with ctx.read_engine.connect() as conn:
        view = load_view(
            conn,
            order_id,
            caps_for=lambda carrier: capabilities(ctx, carrier),
            now=now,
            default_tz=ctx.settings.extra.get("default_timezone", "UTC"),
        )
        if view is None:
            return render(
                request, "tracking/lookup.html", status_code=404, order_number="", error=NOT_FOUND_TEXT
            )
        slots = []
        if view.shipment is not None and "slot" in view.allowed:
            region = view.shipment.destination_region or view.order.ship_region
            slots = [
                s
                for s in list_slots(
                    conn, carrier=view.shipment.carrier, region=region, now=now, until=now + timedelta(days=8)
                )
                if s.remaining > 0
            ]
    nonce = request.cookies.get(NONCE_COOKIE) or secrets.token_urlsafe(16)
    pol = policy(ctx.settings)
    response = render(
        request,
        "tracking/page.html",
        status_code=status_code,
        view=view,
        token=token,
        slots=slots,
        page_token=_page_token(ctx, order_id, nonce),
        done=done,
        error=error,
        error_field=error_field,
        action=action if action in PAGE_ACTIONS else None,
        safe_places=SAFE_PLACES,
        problem_topics=PROBLEM_TOPICS,
        reasons=pol.reasons,
        courier_fee=pol.courier_pickup_fee,
        invoice_url=invoice_link(ctx.settings.secret_key, order_id) if view.invoice else None,
        label_urls={
            r["id"]: label_link(ctx.settings.secret_key, r["id"])
            for r in view.returns
            if r["tracking_number"]
        },
        brand=ctx.settings.brand_name,
    )
    response.set_cookie(
        NONCE_COOKIE,
        nonce,
        httponly=True,
        samesite="strict",
        path="/t/",
        max_age=PAGE_TOKEN_TTL_S,
        secure=ctx.settings.public_base_url.startswith("https"),
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the token is in the URL
    return response


def _refused(request: Request, exc: DoorstepError) -> Response:
    """An action from a stale or forged page: a readable page, not JSON, and nothing changed."""
    return render(
        request, "tracking/lookup.html", status_code=exc.http_status, order_number="", error=exc.detail
    )


def _action_guard(ctx: AppContext, request: Request, token: str, page_token: str) -> str:
    order_id = _order_from_token(ctx, token)
    _check_page_token(ctx, request, order_id, page_token)
    with ctx.engine.begin() as conn:
        if not hit(
            conn,
            key=f"track:action:{order_id}",
            limit=ACTIONS_PER_TOKEN,
            window_s=LOOKUP_WINDOW_S,
            now=ctx.clock.now(),
        ):
            raise RateLimited("too many changes in a short time: wait a few minutes")
    return order_id


def _render_error(ctx: Any, request: Request, token: str, order_id: str, exc: DoorstepError) -> Response:
    """The page again, with a refused action's message beside the field it names."""
    return _render_page(
        ctx,
        request,
        token,
        order_id,
        error=exc.detail,
        error_field=exc.extra.get("field"),
        status_code=exc.http_status,
    )


@router.post("/t/{token}/delivery")
async def post_delivery_change(token: str, request: Request, ctx: CtxDep) -> Response:
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    try:
        order_id = _action_guard(ctx, request, token, fields.pop("page_token", ""))
    except DoorstepError as exc:
        return _refused(request, exc)
    kind = fields.pop("kind", "")
    detail = {k: v for k, v in fields.items() if v != ""}
    with ctx.read_engine.connect() as conn:
        shipment = conn.execute(
            select(shipments.c.id)
            .where(shipments.c.order_id == order_id, shipments.c.is_return.is_(False))
            .order_by(shipments.c.created_at.desc())
        ).first()
    if shipment is None:
        raise StopNotFound("this order has no shipment yet", field="kind")
    try:
        change_delivery(ctx, shipment_id=shipment.id, kind=kind, detail=detail, requested_by="customer")
    except DoorstepError as exc:
        return _render_error(ctx, request, token, order_id, exc)
    return RedirectResponse(f"/t/{token}?done={kind}#changes", status_code=303)


@router.post("/t/{token}/return")
async def post_return(token: str, request: Request, ctx: CtxDep) -> Response:
    form = await request.form()
    try:
        order_id = _action_guard(ctx, request, token, str(form.get("page_token", "")))
    except DoorstepError as exc:
        return _refused(request, exc)
    try:
        lines = [
            LineRequest(
                int(str(v)),
                int(str(form.get(f"qty_{v}", "1")) or "1"),
                str(form.get(f"condition_{v}", "as_new")),
            )
            for v in form.getlist("line")
        ]
    except ValueError:
        return _render_page(
            ctx,
            request,
            token,
            order_id,
            error="quantity must be a whole number",
            error_field="lines",
            status_code=422,
        )
    method = str(form.get("method", "")) or None
    try:
        request_return(
            ctx,
            order_id=order_id,
            lines=lines,
            reason_code=str(form.get("reason_code", "")),
            resolution=str(form.get("resolution", "refund")),
            method=method,
            reason_detail=str(form.get("reason_detail", ""))[:1000] or None,
            exchange_sku=str(form.get("exchange_sku", "")).strip()[:100] or None,
        )
    except DoorstepError as exc:
        return _render_error(ctx, request, token, order_id, exc)
    return RedirectResponse(f"/t/{token}?done=return#returns", status_code=303)


@router.post("/t/{token}/problem")
async def post_problem(token: str, request: Request, ctx: CtxDep) -> Response:
    """A problem report goes into the inbound log as a chat message, so the assistant and the inbox see it."""
    form = await request.form()
    try:
        order_id = _action_guard(ctx, request, token, str(form.get("page_token", "")))
    except DoorstepError as exc:
        return _refused(request, exc)
    topic = str(form.get("topic", ""))
    text = str(form.get("text", "")).strip()
    if topic not in PROBLEM_TOPICS:
        return _render_page(
            ctx,
            request,
            token,
            order_id,
            error="choose what the problem is",
            error_field="topic",
            status_code=422,
        )
    if len(text) > 2000:
        return _render_page(
            ctx,
            request,
            token,
            order_id,
            error="the description is longer than 2000 characters",
            error_field="text",
            status_code=422,
        )
    now = ctx.clock.now()
    message_id = new_id()
    with ctx.engine.begin() as conn:
        customer_id = conn.execute(select(orders.c.customer_id).where(orders.c.id == order_id)).scalar_one()
        append(
            conn,
            [
                LogEntry(
                    source="inbound_message",
                    message_id=f"chat:{message_id}",
                    type="message",
                    name="problem_report",
                    partition_key=f"chat:order:{order_id}",
                    occurred_at=now,
                    payload={
                        "channel": "chat",
                        "from": f"order:{order_id}",
                        "to": "tracking_page",
                        "text": f"[{PROBLEM_TOPICS[topic]}] {text}".strip(),
                        "provider_message_id": message_id,
                        "sent_at": now.isoformat(),
                        "subject": PROBLEM_TOPICS[topic],
                        "raw": {"order_id": order_id, "customer_id": customer_id, "topic": topic},
                    },
                )
            ],
            received_at=now,
        )
    if "wake_worker" in ctx.services:
        ctx.services["wake_worker"]()
    return RedirectResponse(f"/t/{token}?done=problem#help", status_code=303)


@router.get("/t/{token}/proof/{proof_id}/{kind}")
def get_proof_file(token: str, proof_id: str, kind: str, ctx: CtxDep) -> Response:
    order_id = _order_from_token(ctx, token)
    if kind not in ("photo", "signature"):
        raise StopNotFound("no such proof file")
    with ctx.read_engine.connect() as conn:
        row = conn.execute(
            select(proofs_of_delivery.c.photo_path, proofs_of_delivery.c.signature_path)
            .join(shipments, shipments.c.id == proofs_of_delivery.c.shipment_id)
            .where(proofs_of_delivery.c.id == proof_id, shipments.c.order_id == order_id)
        ).first()
    path = (row.photo_path if kind == "photo" else row.signature_path) if row else None
    if not path or not Path(path).is_file():
        raise StopNotFound("no such proof file")
    return FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})
