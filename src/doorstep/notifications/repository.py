"""Persistence for notifications: queueing (idempotent by dedupe key), the sender's claims, what the sender
needs to know about a customer, journeys, preferences and channel identities. Never commits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, or_, select, update

from doorstep.customers.tables import consents, customers, identities
from doorstep.db.dialect import insert_ignore, upsert
from doorstep.ids import new_id
from doorstep.notifications.tables import (
    address_optouts,
    channel_identities,
    delivery_attempts,
    email_suppressions,
    journeys,
    notification_preferences,
    notifications,
    provider_receipts,
)
from doorstep.orders.tables import orders
from doorstep.shipments.tables import proofs_of_delivery, shipments

SENT_STATUSES = ("sent", "delivered", "read")
MERGE_HOPS = 5  # profiles merged into merged ones: chains are rare and short; the bound stops a cycle


def _follow_merges(rows: dict[str, Any], customer_id: str | None) -> Any | None:
    """The live profile row reached from `customer_id` through `rows` (id -> row), as resolve_customer would."""
    for _ in range(MERGE_HOPS):
        if not customer_id:
            return None
        row = rows.get(customer_id)
        if row is None or row.merged_into is None:
            return row
        customer_id = row.merged_into
    return None


@dataclass
class CustomerProfile:
    """What the sender needs about one customer to choose a channel and a time."""

    id: str
    name: str | None
    locale: str | None
    timezone: str | None
    preferred_channels: list[str]
    addresses: dict[str, str]
    consents: dict[tuple[str, str], bool]
    last_inbound: dict[str, datetime] = field(default_factory=dict)
    channel_order: list[str] | None = None
    quiet_start: str | None = None
    quiet_end: str | None = None
    daily_cap: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "timezone": self.timezone, "locale": self.locale}


class NotificationRepository:
    """`uow.notifications`."""

    def __init__(self, conn: Connection):
        self.conn = conn

    # ---- queueing -------------------------------------------------------------------------------------

    def add_queued(self, **values: Any) -> bool:
        """Inserts a queued message unless one with the same dedupe key exists; True if it was new."""
        values.setdefault("id", new_id())
        values.setdefault("status", "queued")
        values.setdefault("attempts", 0)
        stmt = insert_ignore(self.conn, notifications, index_elements=["dedupe_key"]).returning(
            notifications.c.id
        )
        return self.conn.execute(stmt, [values]).first() is not None

    def add_queued_many(self, rows: list[dict[str, Any]]) -> int:
        """`add_queued` for many messages in one statement, in order (the first of two rows with one dedupe
        key wins, as it would one at a time); returns how many were new."""
        first: dict[str, dict[str, Any]] = {}
        for values in rows:
            if values["dedupe_key"] not in first:
                first[values["dedupe_key"]] = {"id": new_id(), "status": "queued", "attempts": 0, **values}
        if not first:
            return 0
        stmt = insert_ignore(self.conn, notifications, index_elements=["dedupe_key"]).returning(
            notifications.c.id
        )
        return len(self.conn.execute(stmt, list(first.values())).all())

    def resolve_customers(self, refs: list[tuple[str | None, str | None]]) -> list[Any | None]:
        """`resolve_customer` for many (customer_id, order_id) pairs, with one query per merge hop."""
        order_ids = {order_id for customer_id, order_id in refs if not customer_id and order_id}
        by_order: dict[str, str] = {}
        if order_ids:
            by_order = dict(
                self.conn.execute(
                    select(orders.c.id, orders.c.customer_id).where(orders.c.id.in_(order_ids))
                ).all()
            )
        starts = [
            customer_id or (by_order.get(order_id) if order_id else None) for customer_id, order_id in refs
        ]
        rows: dict[str, Any] = {}
        wanted = {c for c in starts if c}
        for _ in range(MERGE_HOPS):
            wanted -= rows.keys()
            if not wanted:
                break
            found = self.conn.execute(
                select(customers.c.id, customers.c.locale, customers.c.merged_into).where(
                    customers.c.id.in_(wanted)
                )
            ).all()
            rows.update((row.id, row) for row in found)
            wanted = {row.merged_into for row in found if row.merged_into is not None}
        return [_follow_merges(rows, customer_id) for customer_id in starts]

    def resolve_customer(self, customer_id: str | None, order_id: str | None) -> Any | None:
        """The live profile for an event (following merges), or None when the event names nobody we know."""
        if not customer_id and order_id:
            customer_id = self.conn.execute(
                select(orders.c.customer_id).where(orders.c.id == order_id)
            ).scalar()
        for _ in range(MERGE_HOPS):
            if not customer_id:
                return None
            row = self.conn.execute(
                select(customers.c.id, customers.c.locale, customers.c.merged_into).where(
                    customers.c.id == customer_id
                )
            ).first()
            if row is None or row.merged_into is None:
                return row
            customer_id = row.merged_into
        return None

    # ---- the sender's claims -------------------------------------------------------------------------

    def claim_due(self, *, now: datetime, limit: int, owner: str, lease_s: float) -> list[str]:
        query = (
            select(notifications.c.id)
            .where(
                notifications.c.status == "queued",
                notifications.c.scheduled_for <= now,
                or_(notifications.c.lease_until.is_(None), notifications.c.lease_until < now),
            )
            .order_by(notifications.c.scheduled_for)
            .limit(limit)
        )
        if self.conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = list(self.conn.execute(query).scalars())
        if ids:
            self.conn.execute(
                update(notifications)
                .where(notifications.c.id.in_(ids))
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_s))
            )
        return ids

    def release_claims(self, ids: list[str], *, owner: str) -> None:
        """Gives back claims `owner` holds and will not send: they are due again at once, not when the lease ends."""
        self.conn.execute(
            update(notifications)
            .where(
                notifications.c.id.in_(ids),
                notifications.c.lease_owner == owner,
                notifications.c.status == "queued",
            )
            .values(lease_owner=None, lease_until=None)
        )

    def has_due(self, *, now: datetime) -> bool:
        return (
            self.conn.execute(
                select(notifications.c.id)
                .where(
                    notifications.c.status == "queued",
                    notifications.c.scheduled_for <= now,
                    or_(notifications.c.lease_until.is_(None), notifications.c.lease_until < now),
                )
                .limit(1)
            ).first()
            is not None
        )

    def get(self, notification_id: str) -> Any | None:
        return self.conn.execute(select(notifications).where(notifications.c.id == notification_id)).first()

    def update(self, notification_id: str, **values: Any) -> None:
        self.conn.execute(update(notifications).where(notifications.c.id == notification_id).values(**values))

    def find_by_provider_id(self, provider_message_id: str) -> Any | None:
        return self.conn.execute(
            select(notifications)
            .where(notifications.c.provider_message_id == provider_message_id)
            .with_for_update()
        ).first()

    def find_email(self, message_id: str, *, to_address: str) -> Any | None:
        """The email we sent with this Message-ID (stored with its angle brackets) to this address."""
        if not message_id:
            return None
        return self.conn.execute(
            select(notifications).where(
                notifications.c.channel == "email",
                notifications.c.provider_message_id.in_((f"<{message_id}>", message_id)),
                func.lower(notifications.c.to_address) == to_address.lower(),
            )
        ).first()

    def suppress_email(
        self, address: str, *, customer_id: str, reason: str, notification_id: str | None, now: datetime
    ) -> None:
        """No more email to `address` (its mail bounced for good); a second bounce keeps the first reason."""
        self.conn.execute(
            insert_ignore(self.conn, email_suppressions, index_elements=["address"]).values(
                address=address.lower(),
                customer_id=customer_id,
                reason=reason,
                notification_id=notification_id,
                created_at=now,
            )
        )

    def receipt_is_new(self, key: str, *, now: datetime) -> bool:
        """Records a provider callback key (Messenger mid, status id); False if it was seen before."""
        stmt = insert_ignore(self.conn, provider_receipts, index_elements=["key"]).returning(
            provider_receipts.c.key
        )
        return self.conn.execute(stmt, [{"key": key[:300], "received_at": now}]).first() is not None

    # ---- customers as the sender sees them ------------------------------------------------------------

    def profile(self, customer_id: str) -> CustomerProfile | None:
        return self.profiles([customer_id]).get(customer_id)

    def profiles(self, customer_ids: list[str], *, _depth: int = 0) -> dict[str, CustomerProfile]:
        """Profiles of many customers in five queries (the sender prepares a batch at a time)."""
        ids = sorted(set(customer_ids))
        if not ids:
            return {}
        found: dict[str, CustomerProfile] = {}
        merged: dict[str, str] = {}
        col = customers.c  # only what a profile needs: timestamps and traits cost a conversion each per row
        for row in self.conn.execute(
            select(
                col.id,
                col.merged_into,
                col.email,
                col.phone,
                col.name,
                col.locale,
                col.timezone,
                col.preferred_channels,
            ).where(col.id.in_(ids))
        ):
            if row.merged_into is not None:
                merged[row.id] = row.merged_into  # the profile lives on under the id it was merged into
                continue
            addresses: dict[str, str] = {}
            if row.email:
                addresses["email"] = row.email
            if row.phone:
                addresses["sms"] = row.phone
                addresses["whatsapp"] = row.phone
            found[row.id] = CustomerProfile(
                id=row.id,
                name=row.name,
                locale=row.locale,
                timezone=row.timezone,
                preferred_channels=list(row.preferred_channels or []),
                addresses=addresses,
                consents={},
            )
        if merged and _depth < 5:
            targets = self.profiles(
                list(set(merged.values()) - set(found)), _depth=_depth + 1
            )  # chains of merges resolve too
            for old_id, target in merged.items():
                profile = found.get(target) or targets.get(target)
                if profile is not None:
                    found[old_id] = profile
        if not found:
            return found
        ids = [i for i, p in found.items() if p.id == i]
        if not ids:
            return found
        for ident in self.conn.execute(
            select(identities.c.customer_id, identities.c.kind, identities.c.value).where(
                identities.c.customer_id.in_(ids),
                identities.c.kind.in_(("email", "phone", "whatsapp", "messenger")),
            )
        ):
            addresses = found[ident.customer_id].addresses
            channel = {"phone": "sms"}.get(ident.kind, ident.kind)
            addresses.setdefault(channel, ident.value)
            if ident.kind == "phone":
                addresses.setdefault("whatsapp", ident.value)
        for ci in self.conn.execute(
            select(channel_identities)
            .where(channel_identities.c.customer_id.in_(ids))
            .order_by(channel_identities.c.updated_at)
        ):
            profile = found[ci.customer_id]
            profile.addresses[ci.channel] = ci.address  # the address they last wrote from wins
            if ci.last_inbound_at:
                previous = profile.last_inbound.get(ci.channel, ci.last_inbound_at)
                profile.last_inbound[ci.channel] = max(ci.last_inbound_at, previous)
        by_email = {p.addresses["email"].lower(): p for p in found.values() if "email" in p.addresses}
        if by_email:  # addresses whose mail bounced for good get no more email
            for address in self.conn.execute(
                select(email_suppressions.c.address).where(email_suppressions.c.address.in_(by_email))
            ).scalars():
                by_email[address].addresses.pop("email", None)
        by_phone = {
            (channel, p.addresses[channel]): p
            for p in found.values()
            for channel in ("sms", "whatsapp")
            if channel in p.addresses
        }
        if by_phone:  # a number that texted STOP before any profile held it stays opted out until START
            for channel, address in self.conn.execute(
                select(address_optouts.c.channel, address_optouts.c.address).where(
                    # both key columns constrained, so the lookup stays on the primary key (channel, address)
                    address_optouts.c.channel.in_({c for c, _ in by_phone}),
                    address_optouts.c.address.in_({a for _, a in by_phone}),
                )
            ):
                profile = by_phone.get((channel, address))
                if profile is not None:
                    profile.addresses.pop(channel, None)
        for c in self.conn.execute(select(consents).where(consents.c.customer_id.in_(ids))):
            found[c.customer_id].consents[(c.channel, c.topic)] = bool(c.is_granted)
        pref = notification_preferences.c
        for prefs in self.conn.execute(
            select(
                pref.customer_id, pref.channel_order, pref.quiet_start, pref.quiet_end, pref.daily_cap
            ).where(pref.customer_id.in_(ids))
        ):
            profile = found[prefs.customer_id]
            profile.channel_order = list(prefs.channel_order) if prefs.channel_order else None
            profile.quiet_start, profile.quiet_end, profile.daily_cap = (
                prefs.quiet_start,
                prefs.quiet_end,
                prefs.daily_cap,
            )
        return found

    def rows(self, ids: list[str]) -> dict[str, Any]:
        """The messages by id (a sender reads the rows it leased: the lease, not a row lock, keeps them its own)."""
        if not ids:
            return {}
        return {r.id: r for r in self.conn.execute(select(notifications).where(notifications.c.id.in_(ids)))}

    def orders_by_id(self, ids: list[str | None]) -> dict[str, dict[str, Any]]:
        wanted = sorted({i for i in ids if i})
        if not wanted:
            return {}
        return {
            r.id: dict(r._mapping) for r in self.conn.execute(select(orders).where(orders.c.id.in_(wanted)))
        }

    def shipments_by_id(self, ids: list[str | None]) -> dict[str, dict[str, Any]]:
        wanted = sorted({i for i in ids if i})
        if not wanted:
            return {}
        return {
            r.id: dict(r._mapping)
            for r in self.conn.execute(select(shipments).where(shipments.c.id.in_(wanted)))
        }

    def sent_times_since(self, customer_ids: list[str], since: datetime) -> dict[str, list[datetime]]:
        """When each customer was sent journey messages since `since` (for daily caps in their own day)."""
        wanted = sorted(set(customer_ids))
        found: dict[str, list[datetime]] = {}
        if not wanted:
            return found
        # The status is checked here, not in SQL: given `status IN (...)`, SQLite picks the index on (status,
        # scheduled_for) and reads every message ever sent, on each sender pass; without it, the customer's.
        for r in self.conn.execute(
            select(notifications.c.customer_id, notifications.c.sent_at, notifications.c.status).where(
                notifications.c.customer_id.in_(wanted),
                notifications.c.trigger != "conversation_reply",
                notifications.c.sent_at >= since,
            )
        ):
            if r.status in SENT_STATUSES:
                found.setdefault(r.customer_id, []).append(r.sent_at)
        return found

    def update_many(self, changes: list[tuple[str, dict[str, Any]]]) -> None:
        """Applies per-row updates, grouped by the columns they set, one executemany per group."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for notification_id, values in changes:
            keys = tuple(sorted(values))
            groups.setdefault(keys, []).append(
                {"_id": notification_id, **{f"_{k}": v for k, v in values.items()}}
            )
        for keys, params in groups.items():
            stmt = (
                update(notifications)
                .where(notifications.c.id == bindparam("_id"))
                .values({k: bindparam(f"_{k}") for k in keys})
            )
            self.conn.execute(stmt, params)

    def add_attempts(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(insert(delivery_attempts), rows)

    def order(self, order_id: str | None) -> dict[str, Any] | None:
        if not order_id:
            return None
        row = self.conn.execute(select(orders).where(orders.c.id == order_id)).first()
        return dict(row._mapping) if row is not None else None

    def shipment(self, shipment_id: str | None) -> dict[str, Any] | None:
        if not shipment_id:
            return None
        row = self.conn.execute(select(shipments).where(shipments.c.id == shipment_id)).first()
        return dict(row._mapping) if row is not None else None

    def latest_proof(self, shipment_id: str | None) -> dict[str, Any] | None:
        if not shipment_id:
            return None
        row = self.conn.execute(
            select(proofs_of_delivery)
            .where(proofs_of_delivery.c.shipment_id == shipment_id)
            .order_by(proofs_of_delivery.c.delivered_at.desc())
            .limit(1)
        ).first()
        return dict(row._mapping) if row is not None else None

    # ---- consent, preferences, identities ------------------------------------------------------------

    def set_consent(
        self, *, customer_id: str, channel: str, topic: str, is_granted: bool, source: str, now: datetime
    ) -> bool:
        """Upserts a consent; True if it changed."""
        current = self.conn.execute(
            select(consents.c.is_granted)
            .where(
                consents.c.customer_id == customer_id,
                consents.c.channel == channel,
                consents.c.topic == topic,
            )
            .with_for_update()
        ).scalar()
        if current is not None and bool(current) == is_granted:
            return False
        stmt = upsert(
            self.conn,
            consents,
            index_elements=["customer_id", "channel", "topic"],
            update_columns=["is_granted", "source", "updated_at"],
        )
        self.conn.execute(
            stmt,
            [
                {
                    "customer_id": customer_id,
                    "channel": channel,
                    "topic": topic,
                    "is_granted": is_granted,
                    "source": source,
                    "updated_at": now,
                }
            ],
        )
        return True

    def save_preferences(self, *, customer_id: str, now: datetime, **values: Any) -> None:
        stmt = upsert(
            self.conn,
            notification_preferences,
            index_elements=["customer_id"],
            update_columns=[*values.keys(), "updated_at"],
        )
        self.conn.execute(stmt, [{"customer_id": customer_id, "updated_at": now, **values}])

    def touch_channel_identity(
        self, *, customer_id: str, channel: str, address: str, inbound_at: datetime | None, now: datetime
    ) -> None:
        row = self.conn.execute(
            select(channel_identities.c.id).where(
                channel_identities.c.channel == channel, channel_identities.c.address == address
            )
        ).first()
        if row is None:
            self.conn.execute(
                insert_ignore(self.conn, channel_identities, index_elements=["channel", "address"]),
                [
                    {
                        "customer_id": customer_id,
                        "channel": channel,
                        "address": address,
                        "last_inbound_at": inbound_at,
                        "created_at": now,
                        "updated_at": now,
                    }
                ],
            )
        else:
            values: dict[str, Any] = {"customer_id": customer_id, "updated_at": now}
            if inbound_at is not None:
                values["last_inbound_at"] = inbound_at
            self.conn.execute(
                update(channel_identities).where(channel_identities.c.id == row.id).values(**values)
            )

    def customer_by_address(self, channel: str, address: str) -> str | None:
        """Who wrote: by a channel identity we recorded, an identity in the graph, or the profile's phone/email."""
        found = self.conn.execute(
            select(channel_identities.c.customer_id).where(
                channel_identities.c.channel == channel, channel_identities.c.address == address
            )
        ).scalar()
        if found:
            return str(found)
        kinds = {
            "sms": ("phone", "whatsapp"),
            "whatsapp": ("whatsapp", "phone"),
            "email": ("email",),
            "messenger": ("messenger",),
        }
        found = self.conn.execute(
            select(identities.c.customer_id).where(
                identities.c.kind.in_(kinds.get(channel, (channel,))), identities.c.value == address
            )
        ).scalar()
        if found:
            return str(found)
        if channel in ("sms", "whatsapp"):
            found = self.conn.execute(
                select(customers.c.id).where(customers.c.phone == address, customers.c.merged_into.is_(None))
            ).scalar()
        elif channel == "email":
            found = self.conn.execute(
                select(customers.c.id).where(
                    func.lower(customers.c.email) == address.lower(), customers.c.merged_into.is_(None)
                )
            ).scalar()
        return str(found) if found else None

    def set_address_optout(
        self, channel: str, address: str, *, keyword: str, is_opted_out: bool, now: datetime
    ) -> None:
        """STOP / START from an address no profile holds."""
        if is_opted_out:
            self.conn.execute(
                upsert(
                    self.conn,
                    address_optouts,
                    index_elements=["channel", "address"],
                    update_columns=["keyword"],
                ),
                [{"channel": channel, "address": address, "keyword": keyword, "created_at": now}],
            )
        else:
            self.conn.execute(
                address_optouts.delete().where(
                    address_optouts.c.channel == channel, address_optouts.c.address == address
                )
            )

    def is_address_opted_out(self, channel: str, address: str) -> bool:
        return (
            self.conn.execute(
                select(address_optouts.c.keyword).where(
                    address_optouts.c.channel == channel, address_optouts.c.address == address
                )
            ).first()
            is not None
        )

    # ---- journeys ------------------------------------------------------------------------------------

    def journey_row(self, name: str = "default") -> Any | None:
        return self.conn.execute(select(journeys).where(journeys.c.name == name)).first()

    def journey_version(self, name: str = "default") -> int | None:
        return self.conn.execute(select(journeys.c.version).where(journeys.c.name == name)).scalar()

    def save_journey(
        self, *, name: str, source: str, definition: dict[str, Any], updated_by: str, now: datetime
    ) -> int:
        current = self.conn.execute(
            select(journeys.c.version).where(journeys.c.name == name).with_for_update()
        ).scalar()
        version = (current or 0) + 1
        values = {
            "source": source,
            "definition": definition,
            "version": version,
            "updated_by": updated_by,
            "updated_at": now,
        }
        if current is None:
            self.conn.execute(insert(journeys).values(name=name, **values))
        else:
            self.conn.execute(update(journeys).where(journeys.c.name == name).values(**values))
        return version
