"""Persistence of customer profiles, their identities, the identity-link explanations and consents.

Repositories never commit: the caller's unit of work does.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, tuple_, update

from doorstep.customers.model import (
    Consent,
    Customer,
    Identifier,
    Kind,
    LinkDecision,
    ProfileIdentities,
)
from doorstep.customers.tables import consents, customer_events, customers, identities, identity_links
from doorstep.db.dialect import insert_ignore, upsert
from doorstep.errors import NotFound

PROFILE_COLUMNS = ("email", "phone", "name", "locale", "timezone", "country", "region", "postcode",
                   "preferred_channels", "traits", "first_seen_at", "last_seen_at", "updated_at", "merged_into")

# The projection runs these for every call: built once so SQLAlchemy compiles and caches them once.
_OWNERS = select(identities.c.kind, identities.c.value, identities.c.customer_id).where(
    tuple_(identities.c.kind, identities.c.value).in_(bindparam("pairs", expanding=True))
)
_IDENTITIES_OF = select(identities.c.customer_id, identities.c.kind, identities.c.value).where(
    identities.c.customer_id.in_(bindparam("ids", expanding=True))
)
_GET = select(customers).where(customers.c.id == bindparam("customer_id"))
_GET_FOR_UPDATE = _GET.with_for_update()
_CONSENTS = select(consents).where(consents.c.customer_id == bindparam("customer_id"))
_EXISTS = select(customers.c.id).where(customers.c.id == bindparam("customer_id"))
_UPDATE = update(customers).where(customers.c.id == bindparam("_id"))
_INSERT = insert(customers)
_LINK = insert(identities)
_DECISIONS = insert(identity_links)


class CustomerRepository:
    def __init__(self, conn: Connection):
        self.conn = conn
        self._add_event_statement: Any = None

    # --- identities ---------------------------------------------------------------------------------

    def owners(self, identifiers: Iterable[Identifier]) -> dict[Identifier, str]:
        """The profile each known identifier belongs to."""
        pairs = [(str(i.kind), i.value) for i in identifiers]
        if not pairs:
            return {}
        rows = self.conn.execute(_OWNERS, {"pairs": pairs}).all()
        return {Identifier(Kind(r.kind), r.value): r.customer_id for r in rows if r.kind in Kind._value2member_map_}

    def identities_of(self, customer_ids: Iterable[str]) -> dict[str, ProfileIdentities]:
        ids = sorted(set(customer_ids))
        out = {cid: ProfileIdentities(cid) for cid in ids}
        if not ids:
            return out
        rows = self.conn.execute(_IDENTITIES_OF, {"ids": ids}).all()
        for r in rows:
            if r.kind in Kind._value2member_map_:
                out[r.customer_id].add(Identifier(Kind(r.kind), r.value))
        return out

    def link(self, customer_id: str, identifier: Identifier, *, at: datetime, message_id: str | None) -> None:
        self.conn.execute(
            _LINK,
            {"customer_id": customer_id, "kind": str(identifier.kind), "value": identifier.value, "first_seen_at": at,
             "source_message_id": message_id},
        )

    def record_decisions(self, decisions: Iterable[LinkDecision], *, message_id: str | None, now: datetime) -> None:
        rows = [
            {
                "customer_id": d.customer_id,
                "action": str(d.action),
                "kind": d.kind,
                "value": d.value[:320],
                "other_customer_id": d.other_customer_id,
                "reason": d.reason,
                "message_id": message_id,
                "created_at": now,
            }
            for d in decisions
        ]
        if rows:
            self.conn.execute(_DECISIONS, rows)

    # --- profiles -----------------------------------------------------------------------------------

    def exists(self, customer_id: str) -> bool:
        return self.conn.execute(_EXISTS, {"customer_id": customer_id}).first() is not None

    def get(self, customer_id: str, *, for_update: bool = True, with_consents: bool = True) -> Customer | None:
        row = self.conn.execute(_GET_FOR_UPDATE if for_update else _GET, {"customer_id": customer_id}).first()
        if row is None:
            return None
        customer = Customer(
            id=row.id,
            email=row.email,
            phone=row.phone,
            name=row.name,
            locale=row.locale,
            timezone=row.timezone,
            country=row.country,
            region=row.region,
            postcode=row.postcode,
            preferred_channels=list(row.preferred_channels or []),
            traits=dict(row.traits or {}),
            first_seen_at=row.first_seen_at,
            last_seen_at=row.last_seen_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
            merged_into=row.merged_into,
        )
        if with_consents:
            self.load_consents(customer)
        return customer

    def load_consents(self, customer: Customer) -> None:
        for c in self.conn.execute(_CONSENTS, {"customer_id": customer.id}).all():
            customer.consents[(c.channel, c.topic)] = Consent(c.channel, c.topic, c.is_granted, c.source, c.updated_at)

    def get_or_raise(self, customer_id: str) -> Customer:
        customer = self.get(customer_id)
        if customer is None:
            raise NotFound(f"no customer {customer_id!r}")
        return customer

    def survivor_of(self, customer_id: str) -> str | None:
        """Follows merged_into to the live profile; None when the id is unknown."""
        seen: set[str] = set()
        current = customer_id
        while current not in seen:
            seen.add(current)
            row = self.conn.execute(select(customers.c.merged_into).where(customers.c.id == current)).first()
            if row is None:
                return None
            if row.merged_into is None:
                return current
            current = row.merged_into
        return current

    def add(self, customer: Customer) -> None:
        values = self._values(customer)
        values.update(id=customer.id, created_at=customer.created_at)
        self.conn.execute(_INSERT, values)
        self._save_consents(customer)
        customer.is_new = False

    def save(self, customer: Customer) -> None:
        values = self._values(customer)
        values["_id"] = customer.id
        self.conn.execute(_UPDATE, values)
        self._save_consents(customer)

    def _values(self, customer: Customer) -> dict[str, Any]:
        values = {name: getattr(customer, name) for name in PROFILE_COLUMNS}
        values["preferred_channels"] = list(customer.preferred_channels)
        values["traits"] = dict(customer.traits)
        return values

    def _save_consents(self, customer: Customer) -> None:
        if not customer.consents_changed:
            return
        customer.consents_changed = False
        rows = [
            {"customer_id": customer.id, "channel": c.channel, "topic": c.topic, "is_granted": c.is_granted,
             "source": c.source[:50], "updated_at": c.updated_at}
            for c in customer.consents.values()
        ]
        if rows:
            self.conn.execute(
                upsert(self.conn, consents, index_elements=["customer_id", "channel", "topic"],
                       update_columns=["is_granted", "source", "updated_at"]),
                rows,
            )

    def move_merged(self, *, loser_id: str, survivor_id: str) -> None:
        """Moves what hangs off a merged profile to the survivor (its consents were absorbed already)."""
        for table in (identities, identity_links, customer_events):
            self.conn.execute(update(table).where(table.c.customer_id == loser_id).values(customer_id=survivor_id))
        self.conn.execute(delete(consents).where(consents.c.customer_id == loser_id))

    # --- the event projection -------------------------------------------------------------------------

    def add_event(self, values: dict[str, Any]) -> None:
        statement = self._add_event_statement
        if statement is None:
            statement = self._add_event_statement = insert_ignore(self.conn, customer_events, index_elements=["log_id"])
        self.conn.execute(statement, values)

    # --- erasure ------------------------------------------------------------------------------------

    def merged_ids(self, customer_id: str) -> list[str]:
        """Every profile merged (directly or through others) into `customer_id`, deepest first."""
        found: list[str] = []
        frontier = [customer_id]
        while frontier:
            rows = self.conn.execute(select(customers.c.id).where(customers.c.merged_into.in_(frontier))).all()
            frontier = [r.id for r in rows if r.id not in found and r.id != customer_id]
            found.extend(frontier)
        return list(reversed(found))

    def identifiers_of(self, customer_ids: Iterable[str]) -> list[Identifier]:
        ids = list(customer_ids)
        rows = self.conn.execute(
            select(identities.c.kind, identities.c.value).where(identities.c.customer_id.in_(ids))
        ).all()
        return [Identifier(Kind(r.kind), r.value) for r in rows if r.kind in Kind._value2member_map_]

    def event_log_ids(self, customer_ids: Iterable[str]) -> list[int]:
        ids = list(customer_ids)
        return [r.log_id for r in self.conn.execute(
            select(customer_events.c.log_id).where(customer_events.c.customer_id.in_(ids))
        ).all()]

    def delete_profiles(self, customer_ids: list[str]) -> int:
        """Deletes profiles (merged ones first, so merged_into never dangles); rows hanging off them go by
        ON DELETE CASCADE."""
        total = 0
        for customer_id in customer_ids:
            self.conn.execute(
                update(customers).where(customers.c.merged_into == customer_id).values(merged_into=None)
            )
        for customer_id in customer_ids:
            total += self.conn.execute(delete(customers).where(customers.c.id == customer_id)).rowcount or 0
        return total

