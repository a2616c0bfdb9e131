"""Users, roles, API keys and scopes: plain rules, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    ANALYST = "analyst"
    AGENT = "agent"
    DRIVER = "driver"


class Scope(StrEnum):
    """Scopes a secret API key can carry. Write keys carry only INGEST."""

    INGEST = "ingest"
    READ_CUSTOMERS = "customers:read"
    WRITE_CUSTOMERS = "customers:write"
    READ_ORDERS = "orders:read"
    WRITE_ORDERS = "orders:write"
    READ_SHIPMENTS = "shipments:read"
    WRITE_SHIPMENTS = "shipments:write"
    READ_ANALYTICS = "analytics:read"
    MANAGE_NOTIFICATIONS = "notifications:manage"
    CONVERSATIONS = "conversations"
    ADMIN = "admin"  # everything


# What each staff role may do, expressed as scopes so one check serves users and keys alike.
ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.ADMIN: frozenset(Scope),
    Role.ANALYST: frozenset(
        {Scope.READ_CUSTOMERS, Scope.READ_ORDERS, Scope.READ_SHIPMENTS, Scope.READ_ANALYTICS}
    ),
    Role.AGENT: frozenset(
        {
            Scope.READ_CUSTOMERS,
            Scope.READ_ORDERS,
            Scope.READ_SHIPMENTS,
            Scope.WRITE_SHIPMENTS,
            Scope.CONVERSATIONS,
        }
    ),
    Role.DRIVER: frozenset({Scope.WRITE_SHIPMENTS}),
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: a staff user (via session) or a secret API key."""

    kind: str  # user | key
    id: str
    name: str
    role: Role | None
    scopes: frozenset[str]

    def has_scope(self, scope: Scope | str) -> bool:
        return Scope.ADMIN in self.scopes or str(scope) in self.scopes

    def has_role(self, *roles: Role) -> bool:
        return self.role is not None and (self.role == Role.ADMIN or self.role in roles)
