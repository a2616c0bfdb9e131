"""Use cases of the customers domain: resolve a Segment call to a profile, keep the profile up to date, erase.

`record_call` runs inside the log projection (ingest/handlers.py), in the worker's transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from sqlalchemy import delete, or_, tuple_

from doorstep.bus.registry import Bus
from doorstep.bus.tables import outbox
from doorstep.customers.events import CustomerErased
from doorstep.customers.model import (
    Action,
    Customer,
    Identifier,
    Kind,
    LinkDecision,
    consent_flags,
    extract_identifiers,
    normalise_id,
    obj,
    resolve,
    traits_of,
)
from doorstep.customers.tables import identity_links
from doorstep.db.uow import UnitOfWork
from doorstep.errors import NotFound
from doorstep.ingest.tables import event_log

log = logging.getLogger("doorstep.customers")

MAX_EVENT_PROPERTIES_BYTES = 8 * 1024  # customer_events keeps a lean copy; the full call stays in the log


def register(bus: Bus) -> None:
    """Nothing to subscribe: profiles are built by the Segment projection (ingest/handlers.py)."""


def record_call(
    payload: Mapping[str, Any],
    *,
    log_id: int,
    message_id: str,
    occurred_at: datetime,
    uow: UnitOfWork,
    now: datetime,
    default_region: str | None = None,
) -> str | None:
    """Resolves the call's identifiers to one profile (creating, linking or merging as the rules allow),
    applies its traits and consents, and records it on the profile's timeline. Returns the profile id, or
    None when the call carried no usable identifier (every one blocked)."""
    repo = uow.customers
    identifiers, refused = extract_identifiers(payload, default_region=default_region)
    is_alias = payload.get("type") == "alias"
    if is_alias and payload.get("previousId") is not None:
        previous = normalise_id(Kind.USER_ID, payload["previousId"])
        if isinstance(previous, str):
            as_user = Identifier(Kind.USER_ID, previous)
            kind = Kind.USER_ID if repo.owners([as_user]) else Kind.ANONYMOUS_ID
            candidate = Identifier(kind, previous)
            if candidate not in identifiers:
                identifiers.append(candidate)
        else:
            refused.append(previous)
    owners = repo.owners(identifiers)
    profiles = repo.identities_of(owners.values()) if owners else {}
    resolution = resolve(
        identifiers, owners=owners, profiles=profiles, message_id=message_id, is_alias=is_alias,
        id_exists=repo.exists,
    )
    if resolution.customer_id is None:
        log.info("message %s has no usable identifier (%s); not linked to a profile", message_id,
                 "; ".join(f"{r.kind} {r.reason}" for r in refused) or "none given")
        return None
    customer_id = resolution.customer_id
    traits = traits_of(payload)
    # consents are read only when this call can change them (most calls cannot)
    needs_consents = bool(resolution.merges) or bool(consent_flags(traits))
    customer = None if resolution.is_new else repo.get(customer_id, with_consents=needs_consents)
    if customer is None:
        customer = Customer.create(customer_id, at=occurred_at, now=now)
        repo.add(customer)
    for loser_id in resolution.merges:
        loser = repo.get(loser_id)
        if loser is None:
            continue
        reason = next(
            (d.reason for d in resolution.decisions if d.other_customer_id == loser_id and d.action == "merged"),
            "merged",
        )
        customer.absorb(loser, reason=reason, at=occurred_at, now=now)
        repo.move_merged(loser_id=loser_id, survivor_id=customer_id)
        repo.save(loser)
    for identifier in resolution.links:
        repo.link(customer_id, identifier, at=occurred_at, message_id=message_id)
    repo.record_decisions(resolution.decisions, message_id=message_id, now=now)
    # blocked or malformed identifiers: recorded so the profile shows what was ignored and why
    repo.record_decisions(
        [_refusal_decision(customer_id, r.kind, r.value, r.reason, message_id) for r in refused],
        message_id=message_id,
        now=now,
    )
    linked_now = set(resolution.links)
    context = obj(payload, "context")
    customer.seen(occurred_at)
    customer.apply_traits(
        traits, context=context,
        linked=[i for i in identifiers if i in linked_now or owners.get(i) in {customer_id, *resolution.merges}],
        at=occurred_at, source=f"segment:{payload.get('type')}", now=now,
    )
    repo.save(customer)
    repo.add_event(event_row(payload, log_id=log_id, customer_id=customer_id, occurred_at=occurred_at))
    uow.collect(customer.events)
    return customer_id


def _refusal_decision(customer_id: str, kind: Any, value: str, reason: str, message_id: str) -> LinkDecision:
    return LinkDecision(customer_id, Action.REFUSED, str(kind), value,
                        f"ignored {kind} {value!r}: {reason} (message {message_id})")


def event_row(payload: Mapping[str, Any], *, log_id: int, customer_id: str, occurred_at: datetime) -> dict[str, Any]:
    """The lean timeline row of one call: type, name, time, session, campaign source, product, order."""
    context = obj(payload, "context")
    properties = obj(payload, "properties")
    event_type = str(payload.get("type"))
    name = payload.get("event") if event_type == "track" else payload.get("name")
    kept = properties if event_type != "identify" else traits_of(payload)
    if kept and len(orjson.dumps(kept, default=str)) > MAX_EVENT_PROPERTIES_BYTES:
        kept = {"_truncated": True}
    return {
        "log_id": log_id,
        "customer_id": customer_id,
        "type": event_type,
        "name": name[:255] if isinstance(name, str) else None,
        "occurred_at": occurred_at,
        "session_id": _short(session_id(payload, context, properties), 100),
        "campaign_source": _short(campaign_source(context, properties), 100),
        "product_id": _short(properties.get("product_id") or properties.get("productId"), 100),
        "order_external_id": _short(properties.get("order_id") or properties.get("orderId"), 100),
        "properties": kept or None,
    }


def _short(value: Any, width: int) -> str | None:
    if value is None or isinstance(value, dict | list | bool):
        return None
    text = str(value).strip()
    return text[:width] or None


def session_id(payload: Mapping[str, Any], context: Mapping[str, Any], properties: Mapping[str, Any]) -> Any:
    """RudderStack's context.sessionId, a session_id property, or Amplitude's integration option."""
    for value in (context.get("sessionId"), context.get("session_id"), properties.get("session_id"),
                  properties.get("sessionId")):
        if value is not None:
            return value
    integrations = obj(payload, "integrations")
    amplitude = obj(integrations, "Amplitude")
    return amplitude.get("session_id")


def campaign_source(context: Mapping[str, Any], properties: Mapping[str, Any]) -> Any:
    """context.campaign.source, else utm_source in the page URL or query string."""
    campaign = obj(context, "campaign")
    if campaign.get("source"):
        return campaign["source"]
    page = obj(context, "page")
    for candidate in (page.get("search"), page.get("url"), properties.get("search"), properties.get("url")):
        if not isinstance(candidate, str) or "utm_source" not in candidate:
            continue
        query = candidate.lstrip("?") if candidate.startswith("?") else urlsplit(candidate).query
        values = parse_qs(query).get("utm_source")
        if values:
            return values[0]
    return None


# --- erasure ------------------------------------------------------------------------------------------

# Where inbound messages from a customer's phone or email are logged: partition_key "<channel>:<address>".
MESSAGE_CHANNELS_BY_KIND = {Kind.PHONE: ("sms", "whatsapp"), Kind.EMAIL: ("email",)}


def erase_customer(customer_id: str, *, uow: UnitOfWork, now: datetime) -> dict[str, int]:
    """Removes a customer everywhere: the profile and every profile merged into it (rows hanging off them go
    by FK cascades: identities, consents, events, orders, shipments, messages ...), and their calls in the
    inbound log, found through the timeline and by identity. Records CustomerErased. The caller commits."""
    repo = uow.customers
    survivor = repo.survivor_of(customer_id)
    if survivor is None:
        raise NotFound(f"no customer {customer_id!r}: nothing to erase")
    profile_ids = [*repo.merged_ids(survivor), survivor]
    identifiers = repo.identifiers_of(profile_ids)
    log_ids = repo.event_log_ids(profile_ids)
    keys: list[str] = []
    for identifier in identifiers:
        if identifier.kind == Kind.USER_ID:
            keys.append(f"user:{identifier.value}")
        elif identifier.kind == Kind.ANONYMOUS_ID:
            keys.append(f"anon:{identifier.value}")
        for channel in MESSAGE_CHANNELS_BY_KIND.get(identifier.kind, ()):
            keys.append(f"{channel}:{identifier.value}")
    conn = uow.conn
    removed_log = 0
    for start in range(0, len(log_ids), 500):
        removed_log += conn.execute(delete(event_log).where(event_log.c.id.in_(log_ids[start : start + 500]))).rowcount or 0
    for start in range(0, len(keys), 500):
        removed_log += conn.execute(
            delete(event_log).where(event_log.c.partition_key.in_(keys[start : start + 500]))
        ).rowcount or 0
    # delivered domain events about the customer carry personal data in their payloads
    removed_outbox = conn.execute(
        delete(outbox).where(
            outbox.c.status != "pending",
            or_(*[outbox.c.key == f"customer:{cid}" for cid in profile_ids]),
        )
    ).rowcount or 0
    # other profiles' explanations that name this customer (a refused merge, a refused shared identifier)
    conn.execute(delete(identity_links).where(identity_links.c.other_customer_id.in_(profile_ids)))
    for start in range(0, len(identifiers), 500):
        chunk = identifiers[start : start + 500]
        conn.execute(delete(identity_links).where(
            tuple_(identity_links.c.kind, identity_links.c.value).in_([(str(i.kind), i.value) for i in chunk])
        ))
    removed_profiles = repo.delete_profiles(list(reversed(profile_ids)))
    uow.publish(CustomerErased(customer_id=survivor, occurred_at=now))
    log.info("erased customer %s: %d profiles, %d log rows", survivor, removed_profiles, removed_log)
    return {"profiles": removed_profiles, "log_events": removed_log, "outbox_rows": removed_outbox,
            "identities": len(identifiers)}

