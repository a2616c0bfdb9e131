"""Read side of customers for the API and the staff pages: plain queries returning schema objects."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, and_, or_, select

from doorstep.customers.model import normalise_email, normalise_phone
from doorstep.customers.schemas import (
    ConsentRead,
    CustomerEventRead,
    CustomerOrderSummary,
    CustomerPage,
    CustomerRead,
    CustomerSummary,
    IdentityLinkRead,
    IdentityRead,
)
from doorstep.customers.tables import consents, customer_events, customers, identities, identity_links
from doorstep.errors import NotFound
from doorstep.orders.model import Money
from doorstep.orders.tables import orders
from doorstep.pagination import decode_cursor, encode_cursor

RECENT_EVENTS = 50
RECENT_ORDERS = 50


def find_by_identity(
    conn: Connection, kind: str, value: str, *, default_region: str | None = None
) -> str | None:
    """The live profile holding an identifier (`email`, `phone`, `user_id`, `anonymous_id`), or None.

    Emails and phones are normalised first, so "+44 7911 123456" finds "+447911123456"; other domains use
    this to recognise a customer writing in from a known address.
    """
    if kind == "email":
        normal = normalise_email(value)
        value = normal if isinstance(normal, str) else value.strip().lower()
    elif kind == "phone":
        normal = normalise_phone(value, region=default_region)
        value = normal if isinstance(normal, str) else value.strip()
    row = conn.execute(
        select(identities.c.customer_id).where(identities.c.kind == kind, identities.c.value == value)
    ).first()
    return resolve_id(conn, row.customer_id) if row else None


def resolve_id(conn: Connection, customer_id: str) -> str:
    """The live profile for an id (a merged profile's id leads to the one it was merged into)."""
    seen: set[str] = set()
    current = customer_id
    while current not in seen:
        seen.add(current)
        row = conn.execute(select(customers.c.merged_into).where(customers.c.id == current)).first()
        if row is None:
            raise NotFound(f"no customer {customer_id!r}")
        if row.merged_into is None:
            return current
        current = row.merged_into
    return current


def get_customer(conn: Connection, customer_id: str, *, events_limit: int = RECENT_EVENTS) -> CustomerRead:
    live_id = resolve_id(conn, customer_id)
    row = conn.execute(select(customers).where(customers.c.id == live_id)).one()
    merged = [
        r.id for r in conn.execute(select(customers.c.id).where(customers.c.merged_into == live_id)).all()
    ]
    ident = conn.execute(
        select(identities)
        .where(identities.c.customer_id == live_id)
        .order_by(identities.c.kind, identities.c.id)
    ).all()
    links = conn.execute(
        select(identity_links).where(identity_links.c.customer_id == live_id).order_by(identity_links.c.id)
    ).all()
    consent_rows = conn.execute(
        select(consents)
        .where(consents.c.customer_id == live_id)
        .order_by(consents.c.channel, consents.c.topic)
    ).all()
    events = conn.execute(
        select(customer_events)
        .where(customer_events.c.customer_id == live_id)
        .order_by(customer_events.c.occurred_at.desc(), customer_events.c.log_id.desc())
        .limit(events_limit)
    ).all()
    order_rows = conn.execute(
        select(
            orders.c.id,
            orders.c.external_id,
            orders.c.status,
            orders.c.total_minor,
            orders.c.currency,
            orders.c.placed_at,
        )
        .where(orders.c.customer_id.in_([live_id, *merged]))
        .order_by(orders.c.placed_at.desc(), orders.c.id.desc())
        .limit(RECENT_ORDERS)
    ).all()
    return CustomerRead(
        **_summary(row).model_dump(),
        locale=row.locale,
        timezone=row.timezone,
        region=row.region,
        postcode=row.postcode,
        preferred_channels=list(row.preferred_channels or []),
        traits=dict(row.traits or {}),
        created_at=row.created_at,
        merged_ids=merged,
        identities=[IdentityRead.model_validate(i, from_attributes=True) for i in ident],
        consents=[ConsentRead.model_validate(c, from_attributes=True) for c in consent_rows],
        identity_links=[IdentityLinkRead.model_validate(link, from_attributes=True) for link in links],
        recent_events=[CustomerEventRead.model_validate(e, from_attributes=True) for e in events],
        orders=[
            CustomerOrderSummary(
                id=o.id,
                external_id=o.external_id,
                status=o.status,
                total=str(Money.from_minor(o.total_minor, o.currency).amount),
                currency=o.currency,
                placed_at=o.placed_at,
            )
            for o in order_rows
        ],
    )


def _summary(row: object) -> CustomerSummary:
    return CustomerSummary(
        id=row.id,  # type: ignore[attr-defined]
        email=row.email,  # type: ignore[attr-defined]
        phone=row.phone,  # type: ignore[attr-defined]
        name=row.name,  # type: ignore[attr-defined]
        country=row.country,  # type: ignore[attr-defined]
        first_seen_at=row.first_seen_at,  # type: ignore[attr-defined]
        last_seen_at=row.last_seen_at,  # type: ignore[attr-defined]
        updated_at=row.updated_at,  # type: ignore[attr-defined]
    )


def list_customers(
    conn: Connection,
    *,
    limit: int = 50,
    cursor: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    q: str | None = None,
    updated_since: datetime | None = None,
    default_region: str | None = None,
) -> CustomerPage:
    """Live profiles, most recently updated first; filters match any identity the profile holds."""
    query = select(customers).where(customers.c.merged_into.is_(None))
    if email:
        normal = normalise_email(email)
        value = normal if isinstance(normal, str) else email.strip().lower()
        query = query.where(
            customers.c.id.in_(
                select(identities.c.customer_id).where(
                    identities.c.kind == "email", identities.c.value == value
                )
            )
        )
    if phone:
        normal = normalise_phone(phone, region=default_region)
        value = normal if isinstance(normal, str) else phone.strip()
        query = query.where(
            customers.c.id.in_(
                select(identities.c.customer_id).where(
                    identities.c.kind == "phone", identities.c.value == value
                )
            )
        )
    if q:
        pattern = f"%{q.strip().lower()}%"
        query = query.where(
            or_(
                customers.c.email.like(pattern),
                customers.c.name.ilike(pattern),
                customers.c.phone.like(pattern),
                customers.c.id == q.strip(),
            )
        )
    if updated_since is not None:
        query = query.where(customers.c.updated_at >= updated_since)
    if cursor:
        at, last_id = decode_cursor(cursor, kinds=(datetime, str))
        query = query.where(
            or_(customers.c.updated_at < at, and_(customers.c.updated_at == at, customers.c.id < last_id))
        )
    rows = conn.execute(
        query.order_by(customers.c.updated_at.desc(), customers.c.id.desc()).limit(limit + 1)
    ).all()
    items = [_summary(r) for r in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1].updated_at, rows[limit - 1].id) if len(rows) > limit else None
    return CustomerPage(items=items, next_cursor=next_cursor)
