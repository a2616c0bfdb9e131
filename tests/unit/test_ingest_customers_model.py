"""Identity resolution rules: strangers stay apart, merges and refusals are explained."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from doorstep.customers.events import ConsentChanged, CustomerCreated, CustomersMerged
from doorstep.customers.model import (
    Action,
    Customer,
    Identifier,
    Kind,
    ProfileIdentities,
    Refusal,
    consent_flags,
    customer_id_for,
    extract_identifiers,
    normalise_email,
    normalise_phone,
    preferred_channels,
    resolve,
)

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
U1 = Identifier(Kind.USER_ID, "u1")
U2 = Identifier(Kind.USER_ID, "u2")
A1 = Identifier(Kind.ANONYMOUS_ID, "a1")
A2 = Identifier(Kind.ANONYMOUS_ID, "a2")
E1 = Identifier(Kind.EMAIL, "maya@shop.io")


def profile(customer_id: str, *identifiers: Identifier) -> ProfileIdentities:
    p = ProfileIdentities(customer_id)
    for i in identifiers:
        p.add(i)
    return p


@pytest.mark.parametrize("value", ["null", "NULL", " undefined ", "anonymous", "0", "-1", "", "none", "NaN", "unknown"])
def test_blocked_user_and_anonymous_ids_are_refused(value: str) -> None:
    found, refused = extract_identifiers({"type": "track", "userId": value, "anonymousId": value})

    assert found == []
    assert [r.kind for r in refused] == [Kind.USER_ID, Kind.ANONYMOUS_ID]
    assert all("blocked value" in r.reason for r in refused)


@pytest.mark.parametrize(
    "email", ["test@test.com", "noreply@shop.io", "no-reply@shop.io", "someone@test.com", "null@x.io", "not-an-email"]
)
def test_placeholder_and_malformed_emails_are_refused(email: str) -> None:
    assert isinstance(normalise_email(email), Refusal)


def test_email_is_trimmed_and_lowercased() -> None:
    assert normalise_email("  Maya.Lopez@Shop.IO ") == "maya.lopez@shop.io"


def test_phone_is_normalised_to_e164_with_region_from_traits() -> None:
    found, refused = extract_identifiers(
        {"type": "identify", "userId": "u1", "traits": {"phone": "07911 123456", "address": {"country": "United Kingdom"}}}
    )

    assert Identifier(Kind.PHONE, "+447911123456") in found
    assert refused == []


def test_phone_region_falls_back_to_context_locale_then_default() -> None:
    by_locale, _ = extract_identifiers(
        {"type": "identify", "userId": "u1", "traits": {"phone": "030 901820"}, "context": {"locale": "de-DE"}}
    )
    by_default, _ = extract_identifiers({"type": "identify", "userId": "u1", "traits": {"phone": "(201) 555-0123"}},
                                        default_region="US")

    assert Identifier(Kind.PHONE, "+4930901820") in by_locale
    assert Identifier(Kind.PHONE, "+12015550123") in by_default


def test_local_phone_without_any_region_is_refused_with_a_hint() -> None:
    result = normalise_phone("07911 123456", region=None)

    assert isinstance(result, Refusal)
    assert "+<country code>" in result.reason


@pytest.mark.parametrize("phone", ["0000000000", "+44 0", "1111111111"])
def test_placeholder_phones_are_refused(phone: str) -> None:
    assert isinstance(normalise_phone(phone, region="GB"), Refusal)


def test_identifiers_come_strongest_first() -> None:
    found, _ = extract_identifiers(
        {"type": "identify", "anonymousId": "a1", "userId": "u1", "traits": {"email": "maya@shop.io", "phone": "+447911123456"}}
    )

    assert [i.kind for i in found] == [Kind.USER_ID, Kind.EMAIL, Kind.PHONE, Kind.ANONYMOUS_ID]


def test_first_sighting_creates_a_profile_with_a_deterministic_id() -> None:
    result = resolve([A1], owners={}, profiles={}, message_id="m1")

    assert result.is_new
    assert result.customer_id == customer_id_for(A1)
    assert result.links == [A1]
    assert result.decisions[0].action == Action.CREATED
    assert "first seen anonymous_id:a1 (message m1)" in result.decisions[0].reason


def test_login_links_user_id_to_the_anonymous_profile() -> None:
    result = resolve([U1, A1], owners={A1: "c-anon"}, profiles={"c-anon": profile("c-anon", A1)}, message_id="m2")

    assert result.customer_id == "c-anon"
    assert not result.is_new
    assert result.links == [U1]
    assert result.merges == []
    assert result.decisions[0].action == Action.LINKED
    assert "user_id:u1 with anonymous_id:a1 in message m2" in result.decisions[0].reason


def test_second_user_on_a_shared_device_gets_their_own_profile() -> None:
    # a1's browser belongs to u1's profile; u2 logs in on the same browser
    owners = {A1: "c1"}
    result = resolve([U2, A1], owners=owners, profiles={"c1": profile("c1", U1, A1)}, message_id="m3")

    assert result.customer_id == customer_id_for(U2)
    assert result.is_new
    assert result.links == [U2]  # a1 is not moved away from u1
    assert result.merges == []
    refused = [d for d in result.decisions if d.action == Action.REFUSED]
    assert len(refused) == 1
    assert refused[0].other_customer_id == "c1"
    assert "2 user_id (u1, u2)" in refused[0].reason
    assert "more than the 1 a profile allows" in refused[0].reason


def test_email_shared_by_two_accounts_does_not_merge_them() -> None:
    owners = {U1: "c1", E1: "c2"}
    profiles = {"c1": profile("c1", U1), "c2": profile("c2", U2, E1)}

    result = resolve([U1, E1], owners=owners, profiles=profiles, message_id="m4")

    assert result.customer_id == "c1"
    assert result.merges == []
    assert result.links == []
    assert [d.action for d in result.decisions] == [Action.REFUSED]


def test_anonymous_profile_is_merged_into_the_user_profile_which_outranks_it() -> None:
    owners = {U1: "c-user", A2: "c-anon"}
    profiles = {"c-user": profile("c-user", U1, A1), "c-anon": profile("c-anon", A2)}

    result = resolve([U1, A2], owners=owners, profiles=profiles, message_id="m5")

    assert result.customer_id == "c-user"
    assert result.merges == ["c-anon"]
    merged = result.decisions[0]
    assert merged.action == Action.MERGED
    assert merged.other_customer_id == "c-anon"
    assert "user_id outranks anonymous_id" in merged.reason


def test_a_fourth_email_is_refused_on_a_profile_with_three() -> None:
    emails = [Identifier(Kind.EMAIL, f"m{i}@shop.io") for i in range(3)]
    new_email = Identifier(Kind.EMAIL, "m9@shop.io")
    result = resolve([U1, new_email], owners={U1: "c1"}, profiles={"c1": profile("c1", U1, *emails)}, message_id="m6")

    assert result.customer_id == "c1"
    assert result.links == []
    assert result.decisions[0].action == Action.REFUSED
    assert "allows 3" in result.decisions[0].reason


def test_alias_may_join_two_user_ids() -> None:
    old = Identifier(Kind.USER_ID, "legacy-7")
    result = resolve([U1, old], owners={old: "c-old"}, profiles={"c-old": profile("c-old", old)},
                     message_id="m7", is_alias=True)

    assert result.customer_id == "c-old"
    assert result.links == [U1]
    assert "alias" in result.decisions[0].reason


def test_without_alias_the_same_two_user_ids_stay_apart() -> None:
    old = Identifier(Kind.USER_ID, "legacy-7")
    result = resolve([U1, old], owners={old: "c-old"}, profiles={"c-old": profile("c-old", old)}, message_id="m8")

    assert result.customer_id == customer_id_for(U1)
    assert result.merges == []


def test_a_taken_deterministic_id_is_not_reused() -> None:
    taken = customer_id_for(A1)
    result = resolve([A1], owners={}, profiles={}, message_id="m9", id_exists=lambda cid: cid == taken)

    assert result.customer_id == customer_id_for(A1, attempt=1)
    assert result.customer_id != taken


def test_traits_fill_the_profile_and_consents_raise_events() -> None:
    customer = Customer.create("c1", at=AT, now=AT)
    customer.apply_traits(
        {"name": "Maya Lopez", "address": {"country": "gb", "postal_code": "N1 9GU", "state": "London"},
         "timezone": "Europe/London", "preferred_channels": ["WhatsApp", "fax", "email"],
         "consent": {"whatsapp": {"service": True, "marketing": False}}, "email_opt_in": True},
        context={"locale": "en-GB"}, linked=[E1], at=AT, source="segment:identify", now=AT,
    )

    assert (customer.email, customer.name, customer.country, customer.postcode, customer.region) == (
        "maya@shop.io", "Maya Lopez", "GB", "N1 9GU", "London")
    assert customer.locale == "en-GB"
    assert customer.preferred_channels == ["whatsapp", "email"]
    assert {(c.channel, c.topic, c.is_granted) for c in customer.consents.values()} == {
        ("email", "marketing", True), ("whatsapp", "marketing", False), ("whatsapp", "service", True)}
    kinds = [type(e) for e in customer.events]
    assert kinds.count(CustomerCreated) == 1
    assert kinds.count(ConsentChanged) == 3


def test_unchanged_or_older_consent_raises_no_event() -> None:
    customer = Customer.create("c1", at=AT, now=AT)
    customer.set_consent("sms", "marketing", True, source="s", at=AT)
    customer.events.clear()

    customer.set_consent("sms", "marketing", True, source="s", at=AT)
    customer.set_consent("sms", "marketing", False, source="s", at=datetime(2026, 1, 1, tzinfo=UTC))

    assert customer.events == []
    assert customer.consents[("sms", "marketing")].is_granted is True


def test_absorb_keeps_survivor_values_and_records_the_merge() -> None:
    survivor = Customer(id="c1", email="maya@shop.io", traits={"plan": "gold"}, first_seen_at=AT, last_seen_at=AT)
    loser = Customer(id="c2", email="other@shop.io", phone="+447911123456", traits={"plan": "free", "size": 38},
                     first_seen_at=datetime(2026, 1, 1, tzinfo=UTC), last_seen_at=AT)

    survivor.absorb(loser, reason="because", at=AT, now=AT)

    assert survivor.email == "maya@shop.io"
    assert survivor.phone == "+447911123456"
    assert survivor.traits == {"plan": "gold", "size": 38}
    assert survivor.first_seen_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert loser.merged_into == "c1"
    assert isinstance(survivor.events[-1], CustomersMerged)
    assert survivor.events[-1].merged_id == "c2"


def test_consent_flag_shapes() -> None:
    assert consent_flags({"accepts_marketing": False, "sms_opt_out": True}) == [
        ("email", "marketing", False), ("sms", "marketing", False)]
    assert consent_flags({"unsubscribed": True}) == [("email", "marketing", False)]
    assert consent_flags({"consent": {"carrier_pigeon": True}}) == []


def test_preferred_channel_single_value() -> None:
    assert preferred_channels({"preferred_channel": "SMS"}) == ["sms"]
    assert preferred_channels({}) is None


def test_overlong_email_is_refused() -> None:
    result = normalise_email("a" * 300 + "@shop.io")

    assert isinstance(result, Refusal) and "longer than 254" in result.reason
