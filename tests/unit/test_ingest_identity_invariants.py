"""Identity resolution under many random calls (seeded, so repeatable): the rules' invariants always hold."""

from __future__ import annotations

import random

import pytest

from doorstep.customers.model import (
    IDENTIFIER_LIMITS,
    Identifier,
    Kind,
    ProfileIdentities,
    resolve,
)


def apply_calls(seed: int, n_calls: int = 400) -> tuple[dict[Identifier, str], dict[str, ProfileIdentities]]:
    """Feeds random calls through `resolve` and applies its decisions the way the handler does."""
    rng = random.Random(seed)
    pool = {
        Kind.USER_ID: [f"u{i}" for i in range(12)],
        Kind.EMAIL: [f"e{i}@shop.io" for i in range(12)],
        Kind.PHONE: [f"+4479111234{i:02d}" for i in range(8)],
        Kind.ANONYMOUS_ID: [f"a{i}" for i in range(30)],
    }
    owners: dict[Identifier, str] = {}
    profiles: dict[str, ProfileIdentities] = {}
    for n in range(n_calls):
        kinds = [k for k in pool if rng.random() < 0.5] or [Kind.ANONYMOUS_ID]
        call = sorted(
            {Identifier(k, rng.choice(pool[k])) for k in kinds}, key=lambda i: list(Kind).index(i.kind)
        )
        known = {i: owners[i] for i in call if i in owners}
        result = resolve(
            call,
            owners=known,
            profiles={c: profiles[c] for c in set(known.values())},
            message_id=f"m{n}",
            id_exists=lambda cid: cid in profiles,
        )
        assert result.customer_id is not None
        target = profiles.setdefault(result.customer_id, ProfileIdentities(result.customer_id))
        for loser in result.merges:
            for kind, values in profiles.pop(loser).identifiers.items():
                for value in values:
                    target.add(Identifier(kind, value))
                    owners[Identifier(kind, value)] = target.customer_id
        for identifier in result.links:
            assert identifier not in owners, f"{identifier} linked twice"
            target.add(identifier)
            owners[identifier] = target.customer_id
        assert all(owners[i] in profiles for i in call if i in owners)
    return owners, profiles


@pytest.mark.parametrize("seed", range(8))
def test_limits_hold_and_each_identifier_has_one_profile(seed: int) -> None:
    owners, profiles = apply_calls(seed)

    for profile in profiles.values():
        for kind, limit in IDENTIFIER_LIMITS.items():
            assert profile.count(kind) <= limit, (profile.customer_id, kind, profile.identifiers.get(kind))
    held = [Identifier(k, v) for p in profiles.values() for k, vs in p.identifiers.items() for v in vs]
    assert len(held) == len(set(held)) == len(owners)
    assert all(owners[i] in profiles for i in held)


@pytest.mark.parametrize("seed", range(3))
def test_the_same_calls_give_the_same_profiles(seed: int) -> None:
    first_owners, first_profiles = apply_calls(seed)
    again_owners, again_profiles = apply_calls(seed)

    assert first_owners == again_owners
    assert {c: p.identifiers for c, p in first_profiles.items()} == {
        c: p.identifiers for c, p in again_profiles.items()
    }


def test_two_user_ids_never_share_a_profile_whatever_the_order() -> None:
    for seed in range(20):
        _, profiles = apply_calls(seed, n_calls=200)
        assert all(p.count(Kind.USER_ID) <= 1 for p in profiles.values())
