"""Customer profiles and identity resolution: pure rules, no I/O.

Identifiers (userId, email, phone, anonymousId) seen together in one call link into one profile. Rules keep
strangers apart:

- blocked values ("null", "anonymous", "0", placeholder emails ...) never link anything;
- a profile holds at most `IDENTIFIER_LIMITS[kind]` identifiers of a kind (one userId), so a shared device
  or a shared inbox cannot chain two people together;
- when identifiers of a call point at different profiles, the profile of the strongest identifier
  (userId > email > phone > anonymousId) is kept and the other is merged into it, unless the merge would
  break a limit (two userIds): then the merge is refused and both profiles stay.

Every decision (linked, merged, refused) is returned as a `LinkDecision` with the rule that made it, so the
API can show why identities belong together. Ids are derived from the first identifier (uuid5), so
replaying the log rebuilds the same profiles.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import phonenumbers

from doorstep.bus.messages import DomainEvent
from doorstep.customers.events import ConsentChanged, CustomerCreated, CustomersMerged

NAMESPACE = uuid.UUID("6f1c2f4e-5d7a-4b8e-9a51-0d5a3c2b7e10")  # Doorstep's uuid5 namespace for customers


class Kind(StrEnum):
    USER_ID = "user_id"
    EMAIL = "email"
    PHONE = "phone"
    ANONYMOUS_ID = "anonymous_id"


# Strongest first: when identifiers disagree about who this is, the earlier kind wins.
PRIORITY: tuple[Kind, ...] = (Kind.USER_ID, Kind.EMAIL, Kind.PHONE, Kind.ANONYMOUS_ID)
RANK = {kind: i for i, kind in enumerate(PRIORITY)}

# How many identifiers of a kind one profile may hold. One userId: two userIds are two accounts. A few emails
# and phones (work and home). Many anonymousIds (browsers, devices), bounded so a shared kiosk stops linking.
IDENTIFIER_LIMITS: dict[Kind, int] = {Kind.USER_ID: 1, Kind.EMAIL: 3, Kind.PHONE: 3, Kind.ANONYMOUS_ID: 100}

# Values SDKs and shops send when they have no real identifier. Compared case-insensitively after trimming.
BLOCKED_VALUES = frozenset(
    {
        "", "null", "nil", "none", "undefined", "anonymous", "anon", "unknown", "0", "-1", "nan", "n/a", "na",
        "true", "false", "[object object]", "guest", "test", "user", "default", "(null)", "<null>", "{}", "[]",
        "00000000-0000-0000-0000-000000000000", "not set", "(not set)", "not_set", "empty", "blank", "#",
    }
)
# Placeholder email addresses: a whole address, a local part, or a domain that marks a dummy value.
BLOCKED_EMAILS = frozenset(
    {"test@test.com", "test@example.com", "email@example.com", "user@example.com", "example@example.com",
     "a@a.com", "a@b.com", "x@x.com", "asdf@asdf.com", "foo@bar.com", "abc@abc.com", "me@me.com"}
)
BLOCKED_EMAIL_LOCALS = frozenset(
    {"noreply", "no-reply", "no_reply", "donotreply", "do-not-reply", "do_not_reply", "noemail", "no-email",
     "no_email", "none", "null", "undefined", "unknown", "anonymous", "nobody", "na", "n/a", "test", "dummy",
     "fake", "invalid", "placeholder", "email"}
)
BLOCKED_EMAIL_DOMAINS = frozenset(
    {"test.com", "test.test", "email.com", "domain.com", "none.com", "null.com", "noemail.com", "no-email.com",
     "invalid", "example.invalid", "localhost", "mailinator.com", "fake.com", "dummy.com"}
)
MAX_EMAIL_CHARS = 254  # RFC 5321's limit on a forward path
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CHANNELS = ("email", "sms", "whatsapp", "messenger", "push")
CONSENT_TOPICS = ("service", "marketing")

# Country names SDKs commonly send instead of ISO 3166 codes.
COUNTRY_NAMES = {
    "united kingdom": "GB", "uk": "GB", "great britain": "GB", "england": "GB", "scotland": "GB",
    "wales": "GB", "united states": "US", "united states of america": "US", "usa": "US", "us": "US",
    "germany": "DE", "deutschland": "DE", "france": "FR", "spain": "ES", "españa": "ES", "italy": "IT",
    "italia": "IT", "netherlands": "NL", "the netherlands": "NL", "belgium": "BE", "ireland": "IE",
    "portugal": "PT", "poland": "PL", "polska": "PL", "austria": "AT", "switzerland": "CH", "sweden": "SE",
    "norway": "NO", "denmark": "DK", "finland": "FI", "canada": "CA", "australia": "AU",
    "new zealand": "NZ", "brazil": "BR", "mexico": "MX", "india": "IN", "japan": "JP",
}


@dataclass(frozen=True, order=True)
class Identifier:
    kind: Kind
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


@dataclass(frozen=True)
class Refusal:
    """An identifier that was not linked, and why."""

    kind: Kind
    value: str
    reason: str


class Action(StrEnum):
    CREATED = "created"
    LINKED = "linked"
    MERGED = "merged"
    REFUSED = "refused"


@dataclass(frozen=True)
class LinkDecision:
    """One explained decision: `customer_id` got (or did not get) `kind:value`, or absorbed another profile."""

    customer_id: str
    action: Action
    kind: str
    value: str
    reason: str
    other_customer_id: str | None = None


# --- normalisation --------------------------------------------------------------------------------------


def obj(mapping: Mapping[str, Any], key: str) -> dict[str, Any]:
    """`mapping[key]` when it is a JSON object, else an empty one (calls carry whatever shops send)."""
    value = mapping.get(key)
    return value if isinstance(value, dict) else {}


def is_blocked(value: str) -> bool:
    return value.strip().lower() in BLOCKED_VALUES


def country_code(value: Any) -> str | None:
    """An ISO 3166 alpha-2 code from a code or a common English name; None when not recognised."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) == 2 and text.isalpha():
        return text.upper()
    return COUNTRY_NAMES.get(text.lower())


def normalise_email(raw: Any) -> str | Refusal:
    if not isinstance(raw, str):
        return Refusal(Kind.EMAIL, str(raw), "not a string")
    value = raw.strip().lower()
    if is_blocked(value):
        return Refusal(Kind.EMAIL, value, f"blocked value {value!r}")
    if len(value) > MAX_EMAIL_CHARS:
        return Refusal(Kind.EMAIL, value[:64] + "...", f"longer than {MAX_EMAIL_CHARS} characters")
    if not EMAIL_PATTERN.match(value):
        return Refusal(Kind.EMAIL, value, "not an email address")
    local, _, domain = value.rpartition("@")
    if value in BLOCKED_EMAILS or local in BLOCKED_EMAIL_LOCALS or domain in BLOCKED_EMAIL_DOMAINS:
        return Refusal(Kind.EMAIL, value, "placeholder email address (shared by many people)")
    return value


def normalise_phone(raw: Any, *, region: str | None) -> str | Refusal:
    """E.164 (+447700900123). A number without a country prefix is read in `region`."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str):
        return Refusal(Kind.PHONE, str(raw), "not a string")
    value = raw.strip()
    if is_blocked(value):
        return Refusal(Kind.PHONE, value, f"blocked value {value!r}")
    digits = re.sub(r"\D", "", value)
    if len(set(digits)) <= 1:
        return Refusal(Kind.PHONE, value, "placeholder phone number (one digit repeated)")
    try:
        number = phonenumbers.parse(value, (region or "").upper() or None)
    except phonenumbers.NumberParseException:
        hint = "" if region else " (no country prefix and no default region: send it as +<country code>...)"
        return Refusal(Kind.PHONE, value, f"not a phone number{hint}")
    if not phonenumbers.is_valid_number(number):
        return Refusal(Kind.PHONE, value, "not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_id(kind: Kind, raw: Any) -> str | Refusal:
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return Refusal(kind, str(raw), "not a string")
    value = str(raw).strip()
    if is_blocked(value):
        return Refusal(kind, value, f"blocked value {value!r}")
    return value


def traits_of(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The traits a call carries: identify/group `traits`, else `context.traits`; both merged for identify."""
    context = obj(payload, "context")
    merged: dict[str, Any] = {}
    if isinstance(context.get("traits"), dict):
        merged.update(context["traits"])
    if payload.get("type") == "identify" and isinstance(payload.get("traits"), dict):
        merged.update(payload["traits"])
    return merged


def region_of(payload: Mapping[str, Any], traits: Mapping[str, Any], default: str | None) -> str | None:
    """Where to read a local phone number: traits address/country, context location/locale, then `default`."""
    context = obj(payload, "context")
    address = obj(traits, "address")
    location = obj(context, "location")
    for candidate in (address.get("country"), traits.get("country"), location.get("country")):
        code = country_code(candidate)
        if code:
            return code
    locale = context.get("locale") or traits.get("locale")
    if isinstance(locale, str) and re.match(r"^[a-zA-Z]{2}[-_][a-zA-Z]{2}$", locale.strip()):
        return locale.strip()[-2:].upper()
    return default or None


def extract_identifiers(
    payload: Mapping[str, Any], *, default_region: str | None = None
) -> tuple[list[Identifier], list[Refusal]]:
    """The identifiers of one Segment call, normalised, strongest first; and those refused, with why."""
    traits = traits_of(payload)
    region = region_of(payload, traits, default_region)
    found: list[Identifier] = []
    refused: list[Refusal] = []
    raw: list[tuple[Kind, Any]] = []
    if payload.get("userId") is not None:
        raw.append((Kind.USER_ID, payload["userId"]))
    for key in ("email", "Email"):
        if traits.get(key) is not None:
            raw.append((Kind.EMAIL, traits[key]))
            break
    for key in ("phone", "phone_number", "phoneNumber", "mobile"):
        if traits.get(key) is not None:
            raw.append((Kind.PHONE, traits[key]))
            break
    if payload.get("anonymousId") is not None:
        raw.append((Kind.ANONYMOUS_ID, payload["anonymousId"]))
    for kind, value in raw:
        if kind == Kind.EMAIL:
            result = normalise_email(value)
        elif kind == Kind.PHONE:
            result = normalise_phone(value, region=region)
        else:
            result = normalise_id(kind, value)
        if isinstance(result, Refusal):
            refused.append(result)
        else:
            identifier = Identifier(kind, result)
            if identifier not in found:
                found.append(identifier)
    found.sort(key=lambda i: RANK[i.kind])
    return found, refused


def customer_id_for(identifier: Identifier, *, attempt: int = 0) -> str:
    """The deterministic id of a profile first created from `identifier` (replay reproduces it)."""
    suffix = f"#{attempt}" if attempt else ""
    return str(uuid.uuid5(NAMESPACE, f"customer:{identifier.kind}:{identifier.value}{suffix}"))


# --- resolution -----------------------------------------------------------------------------------------


@dataclass
class ProfileIdentities:
    """What resolution needs to know of an existing profile: its identifiers by kind."""

    customer_id: str
    identifiers: dict[Kind, set[str]] = field(default_factory=dict)

    def count(self, kind: Kind) -> int:
        return len(self.identifiers.get(kind, ()))

    def add(self, identifier: Identifier) -> None:
        self.identifiers.setdefault(identifier.kind, set()).add(identifier.value)


@dataclass
class Resolution:
    customer_id: str | None  # the profile this call belongs to; None when it carried no usable identifier
    is_new: bool = False
    decisions: list[LinkDecision] = field(default_factory=list)
    links: list[Identifier] = field(default_factory=list)  # identifiers to attach to customer_id
    merges: list[str] = field(default_factory=list)  # profiles to fold into customer_id, in order


def _describe(profile: ProfileIdentities, kind: Kind) -> str:
    values = sorted(profile.identifiers.get(kind, ()))
    return ", ".join(values)


def resolve(
    identifiers: list[Identifier],
    *,
    owners: Mapping[Identifier, str],
    profiles: Mapping[str, ProfileIdentities],
    message_id: str,
    is_alias: bool = False,
    id_exists: Callable[[str], bool] = lambda _id: False,
) -> Resolution:
    """Decides which profile a call belongs to, what to link and what to merge.

    `identifiers` strongest first; `owners` maps the known ones to their profile; `profiles` has the
    identifiers of every profile in `owners`. `is_alias` (an alias call) lets its previousId join the
    userId's profile even past the one-userId limit: the sender states they are the same person.
    """
    if not identifiers:
        return Resolution(customer_id=None)
    working = {cid: ProfileIdentities(cid, {k: set(v) for k, v in p.identifiers.items()}) for cid, p in profiles.items()}
    resolution = Resolution(customer_id=None)
    first = identifiers[0]
    anchor = first
    known = [i for i in identifiers if i in owners]
    target: ProfileIdentities
    if first in owners:
        target = working[owners[first]]
    else:
        # The strongest identifier is new. It joins the profile of the strongest known one when that profile
        # has room for it; otherwise (say a second userId on a shared device) it starts its own profile.
        candidate = working[owners[known[0]]] if known else None
        has_room = candidate is not None and (
            candidate.count(first.kind) < IDENTIFIER_LIMITS[first.kind] or (is_alias and first.kind == Kind.USER_ID)
        )
        if candidate is not None and has_room:
            target = candidate
            target.add(first)
            resolution.links.append(first)
            rule = "alias: previousId and userId name the same person" if is_alias else "seen together"
            resolution.decisions.append(
                LinkDecision(target.customer_id, Action.LINKED, first.kind, first.value,
                             f"{rule}: {first} with {known[0]} in message {message_id}")
            )
        else:
            attempt = 0
            new_id = customer_id_for(first)
            while new_id in working or id_exists(new_id):
                attempt += 1
                new_id = customer_id_for(first, attempt=attempt)
            target = ProfileIdentities(new_id)
            working[new_id] = target
            target.add(first)
            resolution.is_new = True
            resolution.links.append(first)
            resolution.decisions.append(
                LinkDecision(new_id, Action.CREATED, first.kind, first.value,
                             f"new profile: first seen {first} (message {message_id})")
            )
    resolution.customer_id = target.customer_id
    for identifier in identifiers[1:]:
        owner_id = owners.get(identifier)
        if owner_id == target.customer_id or identifier in resolution.links:
            continue
        limit = IDENTIFIER_LIMITS[identifier.kind]
        alias_pass = is_alias and identifier.kind == Kind.USER_ID
        if owner_id is None:
            if target.count(identifier.kind) >= limit and not alias_pass:
                resolution.decisions.append(
                    LinkDecision(
                        target.customer_id, Action.REFUSED, identifier.kind, identifier.value,
                        f"not linked: the profile already has {target.count(identifier.kind)} {identifier.kind} "
                        f"({_describe(target, identifier.kind)}) and allows {limit}; seen with {anchor} "
                        f"in message {message_id}",
                    )
                )
                continue
            target.add(identifier)
            resolution.links.append(identifier)
            rule = "alias: previousId and userId name the same person" if is_alias else "seen together"
            resolution.decisions.append(
                LinkDecision(target.customer_id, Action.LINKED, identifier.kind, identifier.value,
                             f"{rule}: {identifier} with {anchor} in message {message_id}")
            )
            continue
        other = working[owner_id]
        conflict = _merge_conflict(target, other, allow_user_ids=is_alias)
        if conflict:
            resolution.decisions.append(
                LinkDecision(
                    target.customer_id, Action.REFUSED, identifier.kind, identifier.value,
                    f"not merged with profile {other.customer_id}: {conflict}; {identifier} stays there "
                    f"(seen with {anchor} in message {message_id})",
                    other_customer_id=other.customer_id,
                )
            )
            continue
        for kind, values in other.identifiers.items():
            for value in values:
                target.add(Identifier(kind, value))
        del working[owner_id]
        owners = {i: (target.customer_id if c == owner_id else c) for i, c in owners.items()}
        resolution.merges.append(owner_id)
        rule = "alias" if is_alias else f"{identifier.kind} seen with {anchor.kind}"
        resolution.decisions.append(
            LinkDecision(
                target.customer_id, Action.MERGED, identifier.kind, identifier.value,
                f"merged profile {owner_id} ({rule}): {identifier} belonged to it and was seen with {anchor} "
                f"in message {message_id}; {anchor.kind} outranks {identifier.kind}"
                if RANK[anchor.kind] < RANK[identifier.kind]
                else f"merged profile {owner_id} ({rule}): {identifier} belonged to it and was seen with {anchor} "
                f"in message {message_id}",
                other_customer_id=owner_id,
            )
        )
    return resolution


def _merge_conflict(target: ProfileIdentities, other: ProfileIdentities, *, allow_user_ids: bool) -> str | None:
    for kind in PRIORITY:
        combined = target.identifiers.get(kind, set()) | other.identifiers.get(kind, set())
        limit = IDENTIFIER_LIMITS[kind]
        if kind == Kind.USER_ID and allow_user_ids:
            limit += 1
        if len(combined) > limit:
            return (
                f"together they would hold {len(combined)} {kind} ({', '.join(sorted(combined))}), "
                f"more than the {limit} a profile allows"
            )
    return None


# --- the profile ------------------------------------------------------------------------------------------


@dataclass
class Consent:
    channel: str
    topic: str
    is_granted: bool
    source: str
    updated_at: datetime


@dataclass
class Customer:
    """A profile. Fields mirror the customers table; `events` collects what changed."""

    id: str
    email: str | None = None
    phone: str | None = None
    name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    country: str | None = None
    region: str | None = None
    postcode: str | None = None
    preferred_channels: list[str] = field(default_factory=list)
    traits: dict[str, Any] = field(default_factory=dict)
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    merged_into: str | None = None
    consents: dict[tuple[str, str], Consent] = field(default_factory=dict)
    events: list[DomainEvent] = field(default_factory=list)
    is_new: bool = False
    consents_changed: bool = False  # the repository writes consents only when they changed

    @classmethod
    def create(cls, customer_id: str, *, at: datetime, now: datetime) -> Customer:
        customer = cls(id=customer_id, first_seen_at=at, last_seen_at=at, created_at=now, updated_at=now,
                       is_new=True)
        customer.events.append(CustomerCreated(customer_id=customer_id, occurred_at=at))
        return customer

    def seen(self, at: datetime) -> None:
        if self.first_seen_at is None or at < self.first_seen_at:
            self.first_seen_at = at
        if self.last_seen_at is None or at > self.last_seen_at:
            self.last_seen_at = at

    def apply_traits(
        self, traits: Mapping[str, Any], *, context: Mapping[str, Any], linked: Iterable[Identifier], at: datetime,
        source: str, now: datetime,
    ) -> None:
        """Takes profile fields from traits (later calls win) and consents from consent flags.

        Email and phone are taken only when they were linked to this profile (a refused email never
        becomes the profile's address)."""
        for identifier in linked:  # in the call's order, so replays pick the same value
            if identifier.kind == Kind.EMAIL:
                self.email = identifier.value
            elif identifier.kind == Kind.PHONE:
                self.phone = identifier.value
        name = _text(traits.get("name")) or " ".join(
            p for p in (_text(traits.get("first_name") or traits.get("firstName")),
                        _text(traits.get("last_name") or traits.get("lastName"))) if p
        )
        if name:
            self.name = name[:200]
        locale = _text(traits.get("locale")) or _text(context.get("locale"))
        if locale:
            self.locale = locale[:20]
        timezone = _text(traits.get("timezone")) or _text(context.get("timezone"))
        if timezone:
            self.timezone = timezone[:64]
        address = obj(traits, "address")
        country = country_code(address.get("country")) or country_code(traits.get("country"))
        if country:
            self.country = country
        region = _text(address.get("state") or address.get("region") or traits.get("region") or traits.get("state"))
        if region:
            self.region = region[:100]
        postcode = _text(address.get("postal_code") or address.get("postalCode") or address.get("postcode")
                         or address.get("zip") or traits.get("postal_code") or traits.get("postcode"))
        if postcode:
            self.postcode = postcode[:20]
        channels = preferred_channels(traits)
        if channels is not None:
            self.preferred_channels = channels
        if traits:
            self.traits = {**self.traits, **{k: v for k, v in traits.items() if k not in ("password",)}}
        for channel, topic, granted in consent_flags(traits):
            self.set_consent(channel, topic, granted, source=source, at=at)
        self.updated_at = now

    def set_consent(self, channel: str, topic: str, is_granted: bool, *, source: str, at: datetime) -> None:
        current = self.consents.get((channel, topic))
        if current is not None and current.is_granted == is_granted:
            return
        if current is not None and current.updated_at > at:
            return  # an older statement arriving late does not override a newer one
        self.consents[(channel, topic)] = Consent(channel, topic, is_granted, source, at)
        self.consents_changed = True
        self.events.append(
            ConsentChanged(customer_id=self.id, channel=channel, topic=topic, is_granted=is_granted, source=source,
                           occurred_at=at)
        )

    def absorb(self, other: Customer, *, reason: str, at: datetime, now: datetime) -> None:
        """Merges `other` into this profile: this profile's values win, `other`'s fill the gaps."""
        for attr in ("email", "phone", "name", "locale", "timezone", "country", "region", "postcode"):
            if getattr(self, attr) is None and getattr(other, attr) is not None:
                setattr(self, attr, getattr(other, attr))
        if not self.preferred_channels:
            self.preferred_channels = list(other.preferred_channels)
        self.traits = {**other.traits, **self.traits}
        for key, consent in other.consents.items():
            mine = self.consents.get(key)
            if mine is None or consent.updated_at > mine.updated_at:
                self.consents[key] = consent
                self.consents_changed = True
        for moment in (other.first_seen_at, other.last_seen_at):
            if moment is not None:
                self.seen(moment)
        other.merged_into = self.id
        other.updated_at = now
        self.updated_at = now
        self.events.append(CustomersMerged(customer_id=self.id, merged_id=other.id, reason=reason, occurred_at=at))


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip() and not is_blocked(value):
        return value.strip()
    return None


def preferred_channels(traits: Mapping[str, Any]) -> list[str] | None:
    """`preferred_channels` (list) or `preferred_channel` (one), keeping known channels in order."""
    raw = traits.get("preferred_channels", traits.get("preferredChannels"))
    if raw is None:
        raw = traits.get("preferred_channel", traits.get("preferredChannel"))
    if raw is None:
        return None
    items = raw if isinstance(raw, list) else [raw]
    out: list[str] = []
    for item in items:
        if isinstance(item, str) and item.strip().lower() in CHANNELS and item.strip().lower() not in out:
            out.append(item.strip().lower())
    return out


def consent_flags(traits: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """Consent statements in traits, as (channel, topic, granted).

    Accepted shapes:
    - `consent` / `consents`: {"email": true} (marketing) or {"whatsapp": {"marketing": false, "service": true}}
    - flags `<channel>_opt_in` / `<channel>_marketing` (marketing), `<channel>_opt_out` (marketing withdrawn)
    - `accepts_marketing` / `email_subscribed` (email marketing), `unsubscribed: true` (email marketing off)
    """
    out: dict[tuple[str, str], bool] = {}
    for key in ("consent", "consents"):
        block = traits.get(key)
        if not isinstance(block, dict):
            continue
        for channel, value in block.items():
            channel = str(channel).lower()
            if channel not in CHANNELS:
                continue
            if isinstance(value, bool):
                out[(channel, "marketing")] = value
            elif isinstance(value, dict):
                for topic, granted in value.items():
                    if topic in CONSENT_TOPICS and isinstance(granted, bool):
                        out[(channel, topic)] = granted
    for channel in CHANNELS:
        for suffix, positive in (("opt_in", True), ("optin", True), ("marketing", True), ("opt_out", False)):
            value = traits.get(f"{channel}_{suffix}")
            if isinstance(value, bool):
                out[(channel, "marketing")] = value if positive else not value
    for key in ("accepts_marketing", "email_subscribed"):
        if isinstance(traits.get(key), bool):
            out[("email", "marketing")] = traits[key]
    if traits.get("unsubscribed") is True:
        out[("email", "marketing")] = False
    return [(channel, topic, granted) for (channel, topic), granted in sorted(out.items())]
