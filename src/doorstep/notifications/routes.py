"""Notifications API: journeys (GET/PUT, admin), template preview, messages and their status, customer
preferences; and the customer's unsubscribe page with RFC 8058 one-click POST."""

from __future__ import annotations

from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from doorstep.context import CtxDep
from doorstep.customers.events import ConsentChanged
from doorstep.customers.tables import customers
from doorstep.notifications.errors import JourneyInvalid, NotificationNotFound
from doorstep.notifications.journeys import parse_source
from doorstep.notifications.model import parse_journey
from doorstep.notifications.queries import get_preferences, list_notifications
from doorstep.notifications.repository import NotificationRepository
from doorstep.notifications.schemas import (
    ConsentItem,
    JourneyRead,
    JourneyUpdate,
    NotificationPage,
    NotificationRead,
    PreferencesRead,
    PreferencesUpdate,
    QuietHours,
    TemplatePreviewCreate,
    TemplatePreviewRead,
)
from doorstep.notifications.services import journeys_of
from doorstep.notifications.templates import render_message, sample_context, validate_template
from doorstep.security.deps import require
from doorstep.security.links import verify
from doorstep.security.model import Principal, Role, Scope
from doorstep.web.templating import render

router = APIRouter(tags=["notifications"])

AdminDep = Annotated[Principal, Depends(require(scope=Scope.ADMIN))]
ManageDep = Annotated[Principal, Depends(require(scope=Scope.MANAGE_NOTIFICATIONS))]
ReadDep = Annotated[
    Principal, Depends(require(scope=Scope.MANAGE_NOTIFICATIONS, roles=(Role.AGENT, Role.ANALYST)))
]


# ---- journeys -------------------------------------------------------------------------------------------


@router.get("/api/v1/journeys", response_model=JourneyRead, summary="The journey in force (YAML and parsed)")
def get_journey(ctx: CtxDep, principal: AdminDep) -> JourneyRead:
    with ctx.read_engine.connect() as conn:
        source, version = journeys_of(ctx).source(conn)
    _, data = parse_source(source)
    return JourneyRead(name="default", version=version, source=source, definition=data)


def save_journey(ctx: Any, *, source: str, data: dict[str, Any], updated_by: str) -> int:
    with ctx.uow() as uow:
        version = NotificationRepository(uow.conn).save_journey(
            name="default", source=source, definition=data, updated_by=updated_by, now=ctx.clock.now()
        )
        uow.commit()
    journeys_of(ctx).invalidate()
    return version


@router.put(
    "/api/v1/journeys",
    response_model=JourneyRead,
    summary="Replace the journey (validated; 422 names the field)",
)
async def put_journey(request: Request, ctx: CtxDep, principal: AdminDep) -> JourneyRead:
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    body = await request.body()
    if content_type in ("application/yaml", "application/x-yaml", "text/yaml", "text/plain"):
        source = body.decode("utf-8", errors="replace")
        _, data = parse_source(source)
    else:
        try:
            update = JourneyUpdate.model_validate_json(body or b"{}")
        except ValueError as exc:
            raise JourneyInvalid(
                f"body: {exc.errors()[0]['msg'] if hasattr(exc, 'errors') else exc}", field="body"
            ) from None
        if update.source is not None:
            source = update.source
            _, data = parse_source(source)
        elif update.definition is not None:
            from doorstep.notifications.journeys import event_fields

            parse_journey(update.definition, event_fields=event_fields())
            data = update.definition
            source = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        else:
            raise JourneyInvalid(
                "body: give `source` (YAML text) or `definition` (an object)", field="source"
            )
    version = await run_in_threadpool(save_journey, ctx, source=source, data=data, updated_by=principal.name)
    return JourneyRead(name="default", version=version, source=source, definition=data)


# ---- templates ------------------------------------------------------------------------------------------


@router.post(
    "/api/v1/templates/preview",
    response_model=TemplatePreviewRead,
    summary="Render a template with sample data",
)
def preview_template(body: TemplatePreviewCreate, ctx: CtxDep, principal: ManageDep) -> TemplatePreviewRead:
    override = None
    if body.template is not None:
        override = {k: v for k, v in body.template.model_dump().items() if v is not None}
        validate_template(override)
    locale = body.locale.split("-")[0].lower()
    context = sample_context(ctx.settings, trigger=body.trigger, channel=body.channel, locale=locale)
    rendered = render_message(body.trigger, body.channel, locale, context, override=override)
    return TemplatePreviewRead(
        trigger=body.trigger,
        channel=body.channel,
        locale=locale,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        whatsapp_template=rendered.whatsapp_template,
    )


# ---- messages -------------------------------------------------------------------------------------------


@router.get(
    "/api/v1/notifications", response_model=NotificationPage, summary="Messages, newest first, with status"
)
def get_notifications(
    ctx: CtxDep,
    principal: ReadDep,
    customer_id: str | None = None,
    order_id: str | None = None,
    status: str | None = None,
    channel: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> NotificationPage:
    with ctx.read_engine.connect() as conn:
        rows = list_notifications(
            conn, customer_id=customer_id, order_id=order_id, status=status, channel=channel, limit=limit
        )
    return NotificationPage(items=[NotificationRead.model_validate(dict(r._mapping)) for r in rows])


# ---- preferences ----------------------------------------------------------------------------------------


def _preferences(ctx: Any, customer_id: str) -> PreferencesRead:
    with ctx.read_engine.connect() as conn:
        if conn.execute(customers.select().where(customers.c.id == customer_id)).first() is None:
            raise NotificationNotFound(f"no customer {customer_id}")
        prefs, granted = get_preferences(conn, customer_id)
    quiet = (
        QuietHours(start=prefs.quiet_start, end=prefs.quiet_end)
        if prefs is not None and prefs.quiet_start and prefs.quiet_end
        else None
    )
    return PreferencesRead(
        customer_id=customer_id,
        channel_order=list(prefs.channel_order) if prefs is not None and prefs.channel_order else None,
        quiet_hours=quiet,
        daily_cap=prefs.daily_cap if prefs is not None else None,
        consents=[
            ConsentItem(channel=c.channel, topic=c.topic, is_granted=c.is_granted)
            for c in granted
            if c.channel in ("email", "sms", "whatsapp", "messenger")
        ],
    )


@router.get("/api/v1/customers/{customer_id}/notification-preferences", response_model=PreferencesRead)
def read_preferences(customer_id: str, ctx: CtxDep, principal: ReadDep) -> PreferencesRead:
    return _preferences(ctx, customer_id)


@router.put("/api/v1/customers/{customer_id}/notification-preferences", response_model=PreferencesRead)
def update_preferences(
    customer_id: str, body: PreferencesUpdate, ctx: CtxDep, principal: ManageDep
) -> PreferencesRead:
    now = ctx.clock.now()
    with ctx.uow() as uow:
        repo = NotificationRepository(uow.conn)
        if repo.resolve_customer(customer_id, None) is None:
            raise NotificationNotFound(f"no customer {customer_id}")
        repo.save_preferences(
            customer_id=customer_id,
            now=now,
            channel_order=body.channel_order,
            quiet_start=body.quiet_hours.start if body.quiet_hours else None,
            quiet_end=body.quiet_hours.end if body.quiet_hours else None,
            daily_cap=body.daily_cap,
        )
        for c in body.consents:
            if repo.set_consent(
                customer_id=customer_id,
                channel=c.channel,
                topic=c.topic,
                is_granted=c.is_granted,
                source=f"api:{principal.name}"[:50],
                now=now,
            ):
                uow.publish(
                    ConsentChanged(
                        occurred_at=now,
                        customer_id=customer_id,
                        channel=c.channel,
                        topic=c.topic,
                        is_granted=c.is_granted,
                        source="api",
                    )
                )
        uow.commit()
    return _preferences(ctx, customer_id)


# ---- unsubscribe (customers, signed link) ---------------------------------------------------------------


def _unsubscribe_target(ctx: Any, token: str) -> tuple[str, str, str]:
    customer_id, channel, topic = verify(
        ctx.settings.secret_key, "unsubscribe", token, max_age_s=400 * 24 * 3600
    ).split("|")
    return customer_id, channel, topic


def unsubscribe(ctx: Any, *, customer_id: str, channel: str, topic: str, source: str) -> bool:
    now = ctx.clock.now()
    with ctx.uow() as uow:
        repo = NotificationRepository(uow.conn)
        if repo.resolve_customer(customer_id, None) is None:
            return False
        changed = repo.set_consent(
            customer_id=customer_id, channel=channel, topic=topic, is_granted=False, source=source, now=now
        )
        if changed:
            uow.publish(
                ConsentChanged(
                    occurred_at=now,
                    customer_id=customer_id,
                    channel=channel,
                    topic=topic,
                    is_granted=False,
                    source=source,
                )
            )
        uow.commit()
    return changed


TOPIC_LABELS = {"service": "order and delivery updates", "marketing": "news and offers"}


@router.get("/u/{token}", response_class=HTMLResponse, include_in_schema=False)
def unsubscribe_page(token: str, request: Request, ctx: CtxDep) -> HTMLResponse:
    _, channel, topic = _unsubscribe_target(ctx, token)
    return render(
        request,
        "notifications/unsubscribe.html",
        token=token,
        channel=channel,
        topic_label=TOPIC_LABELS.get(topic, topic),
        done=False,
    )


@router.post("/u/{token}", response_class=HTMLResponse, include_in_schema=False)
async def unsubscribe_post(token: str, request: Request, ctx: CtxDep) -> HTMLResponse:
    """The page's button and RFC 8058 one-click (body List-Unsubscribe=One-Click, no cookies) both land here."""
    customer_id, channel, topic = _unsubscribe_target(ctx, token)
    await run_in_threadpool(
        unsubscribe, ctx, customer_id=customer_id, channel=channel, topic=topic, source="unsubscribe_link"
    )
    return render(
        request,
        "notifications/unsubscribe.html",
        token=token,
        channel=channel,
        topic_label=TOPIC_LABELS.get(topic, topic),
        done=True,
    )
