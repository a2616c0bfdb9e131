"""A seeded, deterministic retailer's world: customers, sessions, orders, parcels, contacts, feedback, truth.

The world is cut into chunks of consecutive orders. Each chunk draws its randomness from its own generator
seeded with (seed, chunk index), so a chunk is the same whichever process builds it and in whatever order:
the files written by several processes are byte-identical to those written by one.

    world = generate(load_profile("boutique"), orders=2000, seed=7)
    for event in world.segment_events(): ...
    for when, kind, payload in world.timeline(): ...   # everything, in simulated-time order

Shapes: `segment` events are Segment Tracking API calls as /v1/batch takes them; `aftership` items are
AfterShip `tracking_update` webhook bodies; `twilio` items are the form fields of a Twilio inbound message
webhook; `message` items are Doorstep's canonical inbound messages (email and web chat); `feedback` rows are
survey answers and reviews.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import orjson

from doorstep.simulator import reference as ref
from doorstep.simulator import text
from doorstep.simulator.profile import WEEKDAYS, Profile

DAY_S = 86_400
HOUR_S = 3_600
CHUNK_ORDERS = 5_000
# Hour-of-day shape of shopping, local time: quiet at night, peaks at lunch and in the evening.
HOUR_WEIGHTS = np.array(
    [
        0.6,
        0.3,
        0.2,
        0.15,
        0.15,
        0.3,
        0.7,
        1.3,
        2.0,
        2.5,
        2.8,
        3.0,
        3.4,
        3.2,
        2.9,
        2.8,
        2.9,
        3.1,
        3.5,
        4.0,
        4.3,
        3.8,
        2.6,
        1.4,
    ]
)
HOUR_WEIGHTS = HOUR_WEIGHTS / HOUR_WEIGHTS.sum()
SHOP_PHONE = "+4934112345678"  # the shop's own SMS/WhatsApp number (Twilio "To")
TWILIO_ACCOUNT_SID = "AC" + "5" * 32
CONTACT_OWNERS = {
    "late": "carrier",
    "failed_attempt": "carrier",
    "damaged": "carrier",
    "lost": "carrier",
    "wrong_item": "warehouse",
    "refund_slow": "payments",
    "invoice_missing": "payments",
    "none": "product",
}


_TIME_OF_DAY = [f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z" for s in range(DAY_S)]
_DAY_CACHE: dict[int, str] = {}
_MASK64 = (1 << 64) - 1


def iso(t: int) -> str:
    """ISO 8601 UTC with a Z, at second precision; memoised by day because it runs tens of millions of times."""
    day = t // DAY_S
    prefix = _DAY_CACHE.get(day)
    if prefix is None:
        prefix = _DAY_CACHE[day] = (date(1970, 1, 1) + timedelta(days=day)).isoformat()
    return prefix + _TIME_OF_DAY[t - day * DAY_S]


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a cheap bijective scramble, so derived ids look random yet never collide."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


_TAGS: dict[str, int] = {}


def _hex(seed: int, tag: str, a: int, n: int = 32) -> str:
    """A deterministic hex id from (seed, tag, a); for one seed and tag, distinct `a` never collide."""
    tag_id = _TAGS.get(tag)
    if tag_id is None:
        tag_id = _TAGS[tag] = int(hashlib.blake2b(tag.encode(), digest_size=4).hexdigest(), 16)
    hi = _mix64(((seed & 0xFFFFFF) << 32) ^ tag_id)
    lo = _mix64((a & _MASK64) ^ hi)
    return f"{_mix64(hi ^ lo):016x}{lo:016x}"[:n] if n > 16 else f"{lo:016x}"[:n]


_UUID_PREFIX: dict[tuple[int, str], tuple[str, int]] = {}


def _uuid(seed: int, tag: str, a: int) -> str:
    """A version-4-shaped UUID string derived from (seed, tag, a); for one seed and tag, distinct `a` differ."""
    cached = _UUID_PREFIX.get((seed, tag))
    if cached is None:
        tag_id = int(hashlib.blake2b(tag.encode(), digest_size=4).hexdigest(), 16)
        hi = _mix64(((seed & 0xFFFFFF) << 32) ^ tag_id ^ 0x5555)
        cached = _UUID_PREFIX[(seed, tag)] = (
            f"{hi >> 32:08x}-{(hi >> 16) & 0xFFFF:04x}-4{hi & 0xFFF:03x}-",
            hi,
        )
    prefix, hi = cached
    lo = _mix64((a & _MASK64) ^ hi)
    return f"{prefix}{((lo >> 48) & 0x0FFF) | 0xA000:04x}-{lo & 0xFFFFFFFFFFFF:012x}"


def _ascii(name: str) -> str:
    table = str.maketrans(
        {
            "ä": "ae",
            "ö": "oe",
            "ü": "ue",
            "ß": "ss",
            "é": "e",
            "è": "e",
            "ê": "e",
            "ë": "e",
            "à": "a",
            "â": "a",
            "î": "i",
            "ï": "i",
            "ô": "o",
            "û": "u",
            "ç": "c",
            "á": "a",
            "í": "i",
            "ó": "o",
            "ú": "u",
            "ñ": "n",
            "É": "e",
            "Ü": "ue",
            "Ö": "oe",
            "Ä": "ae",
            "'": "",
            " ": "",
        }
    )
    return name.lower().translate(table)


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def _weights(values: dict[str, float]) -> tuple[list[str], np.ndarray]:
    keys = list(values)
    w = np.array([values[k] for k in keys], dtype=float)
    return keys, w / w.sum()


@dataclass
class Plan:
    """What the whole world shares, computed once from the profile and seed: the calendar of orders per day,
    the catalogue and the customers (as arrays, turned into strings on use)."""

    profile: Profile
    orders: int
    seed: int
    start: date
    days: int
    order_day: np.ndarray  # per order, day index from start (sorted)
    chunk_orders: int
    # catalogue
    categories: list[str]
    product_category: np.ndarray
    product_price_minor: np.ndarray
    product_names: list[str]
    category_products: list[np.ndarray]
    category_weights: np.ndarray
    # customers
    countries: list[str]
    customer_count: int
    cust_country: np.ndarray
    cust_first: np.ndarray
    cust_last: np.ndarray
    cust_city: np.ndarray
    cust_street: np.ndarray
    cust_house: np.ndarray
    cust_postal: np.ndarray
    cust_phone_prefix: np.ndarray
    cust_pref: np.ndarray
    cust_marketing: np.ndarray
    cust_whatsapp: np.ndarray
    cust_phone_shared: np.ndarray
    cust_domain: np.ndarray
    pref_channels: list[str]
    # carriers and lanes
    carriers: list[str]
    carrier_weights: np.ndarray
    lane_of_country: dict[str, str]
    start_epoch: int = 0
    peak_of_day: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def chunk_count(self) -> int:
        return (self.orders + self.chunk_orders - 1) // self.chunk_orders

    def order_number(self, i: int) -> str:
        return f"{self.profile.order_prefix}{self.seed}-{100001 + i}"

    def user_id(self, c: int) -> str:
        return f"u{self.seed}-{c + 1:06d}"

    def customer(self, c: int) -> dict[str, Any]:
        """The customer's profile as the shop knows it."""
        country = self.countries[int(self.cust_country[c])]
        conf = self.profile.customers.countries[country]
        place = ref.PLACES.get(country, ref.DEFAULT_PLACE)
        lang = place["lang"]
        firsts, lasts = ref.FIRST_NAMES[lang], ref.LAST_NAMES[lang]
        first = firsts[int(self.cust_first[c]) % len(firsts)]
        last = lasts[int(self.cust_last[c]) % len(lasts)]
        city, region, pc_seed, lat, lon = place["cities"][int(self.cust_city[c]) % len(place["cities"])]
        street = place["streets"][int(self.cust_street[c]) % len(place["streets"])]
        postcode = _postcode(place["postcode"], pc_seed, int(self.cust_postal[c]))
        house = int(self.cust_house[c])
        line1 = f"{house} {street}" if lang in ("en", "fr") else f"{street} {house}"
        cc, prefixes, digits = place["phone"]
        # a bijection of the customer index, so two customers never share a number or an email address
        unique = (c * 7_919 + self.seed * 104_729) % (10**digits)
        phone = f"+{cc}{prefixes[int(self.cust_phone_prefix[c]) % len(prefixes)]}{unique:0{digits}d}"
        tag = _base36((c * 2_654_435_761 + self.seed) % (36**7))
        email = f"{_ascii(first)}.{_ascii(last)}.{tag}@{ref.EMAIL_DOMAINS[int(self.cust_domain[c]) % len(ref.EMAIL_DOMAINS)]}"
        return {
            "index": c,
            "user_id": self.user_id(c),
            "first_name": first,
            "last_name": last,
            "name": f"{first} {last}",
            "email": email,
            "phone": phone if bool(self.cust_phone_shared[c]) else None,
            "mobile": phone,
            "locale": conf.locale,
            "language": text.language(conf.locale),
            "timezone": conf.timezone,
            "utc_offset_s": int(conf.utc_offset_hours * HOUR_S),
            "country": country,
            "city": city,
            "region": region,
            "postcode": postcode,
            "line1": line1,
            "latitude": lat,
            "longitude": lon,
            "preferred_channel": self.pref_channels[int(self.cust_pref[c])],
            "marketing_consent": bool(self.cust_marketing[c]),
            "whatsapp_opt_in": bool(self.cust_whatsapp[c]),
        }


def _postcode(style: str, seed: str, n: int) -> str:
    if style == "5":
        return f"{seed}{n % 10 ** (5 - len(seed)):0{5 - len(seed)}d}"
    if style == "4":
        return f"{seed}{n % 10 ** (4 - len(seed)):0{4 - len(seed)}d}"
    if style == "uk":
        letters = "ABDEFGHJLNPQRSTUWXYZ"
        return f"{seed}{1 + n % 19} {n % 9 + 1}{letters[n // 7 % 20]}{letters[n // 11 % 20]}"
    if style == "ie":
        return f"{seed}{n % 10}{n // 10 % 10} {_base36(n % 36**4).upper():0>4}"
    if style == "nl":
        letters = "ABCDEGHJKLMNPRSTVWXZ"
        return f"{seed}{n % 100:02d} {letters[n // 100 % 20]}{letters[n // 2000 % 20]}"
    return str(n % 100000)


def make_plan(
    profile: Profile,
    *,
    orders: int | None = None,
    seed: int = 1,
    start: date | None = None,
    end: date | None = None,
    chunk_orders: int = CHUNK_ORDERS,
) -> Plan:
    orders = int(orders if orders is not None else profile.orders)
    if orders < 1:
        raise ValueError(f"orders must be at least 1, got {orders}")
    start = start or profile.start
    end = end or profile.end
    if end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    days = (end - start).days
    rng = np.random.default_rng([seed, 0])
    day_dates = [start + timedelta(days=d) for d in range(days)]
    weekday_w = np.array([profile.calendar.weekday_weights[WEEKDAYS[d.weekday()]] for d in day_dates])
    peak_mult = np.ones(days)
    peak_of_day = np.full(days, -1, dtype=np.int64)
    for p_idx, peak in enumerate(profile.calendar.peaks):
        for d, day in enumerate(day_dates):
            if peak.start <= day <= peak.end:
                peak_mult[d] = peak.order_multiplier
                peak_of_day[d] = p_idx
    w = weekday_w * peak_mult
    counts = rng.multinomial(orders, w / w.sum())
    order_day = np.repeat(np.arange(days), counts)

    # catalogue
    categories, cat_w = _weights({k: v.weight for k, v in profile.catalogue.categories.items()})
    n_products = profile.catalogue.products
    product_category = rng.choice(len(categories), size=n_products, p=cat_w)
    product_price_minor = np.zeros(n_products, dtype=np.int64)
    names: list[str] = []
    for i in range(n_products):
        cat = profile.catalogue.categories[categories[product_category[i]]]
        price = rng.uniform(cat.price_min, cat.price_max)
        product_price_minor[i] = max(100, round(price) * 100 - 1)  # 39.99
        adjectives, nouns = ref.PRODUCT_WORDS.get(categories[product_category[i]], ref.DEFAULT_PRODUCT_WORDS)
        names.append(
            f"{adjectives[i % len(adjectives)]} {nouns[(i // len(adjectives)) % len(nouns)]} {i + 1}"
        )
    # popularity: a few products sell much more than others (Zipf-like)
    category_products = [np.flatnonzero(product_category == k) for k in range(len(categories))]
    category_weights = cat_w.copy()
    for k, members in enumerate(category_products):
        if len(members) == 0:
            category_weights[k] = 0.0
    category_weights = category_weights / category_weights.sum()

    # customers
    c_count = max(1, round(orders / profile.customers.orders_per_customer))
    countries, country_w = _weights({k: v.weight for k, v in profile.customers.countries.items()})
    prefs, pref_w = _weights(profile.customers.channel_preferences)
    lane_of_country = {}
    for lane_name, lane in profile.lanes.items():
        for country in lane.countries:
            lane_of_country[country] = lane_name
    carriers, carrier_w = _weights({k: v.weight for k, v in profile.carriers.items()})
    start_epoch = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp())
    return Plan(
        profile=profile,
        orders=orders,
        seed=seed,
        start=start,
        days=days,
        order_day=order_day,
        chunk_orders=chunk_orders,
        categories=categories,
        product_category=product_category,
        product_price_minor=product_price_minor,
        product_names=names,
        category_products=category_products,
        category_weights=category_weights,
        countries=countries,
        customer_count=c_count,
        cust_country=rng.choice(len(countries), size=c_count, p=country_w),
        cust_first=rng.integers(0, 1000, size=c_count),
        cust_last=rng.integers(0, 1000, size=c_count),
        cust_city=rng.integers(0, 1000, size=c_count),
        cust_street=rng.integers(0, 1000, size=c_count),
        cust_house=rng.integers(1, 120, size=c_count),
        cust_postal=rng.integers(0, 10**6, size=c_count),
        cust_phone_prefix=rng.integers(0, 1000, size=c_count),
        cust_pref=rng.choice(len(prefs), size=c_count, p=pref_w),
        cust_marketing=rng.random(c_count) < profile.customers.marketing_consent,
        cust_whatsapp=rng.random(c_count) < profile.customers.whatsapp_opt_in,
        cust_phone_shared=rng.random(c_count) < profile.customers.phone_shared,
        cust_domain=rng.integers(0, 1000, size=c_count),
        pref_channels=prefs,
        carriers=carriers,
        carrier_weights=carrier_w,
        lane_of_country=lane_of_country,
        start_epoch=start_epoch,
        peak_of_day=peak_of_day,
    )


class _Checkpoints:
    """A shipment's checkpoints, shared by its updates; serialised once for the file writer."""

    __slots__ = ("dumped", "items")

    def __init__(self, items: list[dict[str, Any]]):
        self.items = items
        self.dumped: list[bytes] | None = None


class TrackingUpdate:
    """One AfterShip `tracking_update` webhook: the tracking as it stood after its `upto`-th checkpoint.

    `body()` gives the JSON-ready dict; `dumps()` gives the same document as bytes, reusing the shipment's
    checkpoints serialised once (each webhook repeats the history so far, so this is most of the volume).
    """

    __slots__ = ("base", "envelope", "shipment", "ts", "upto", "varying")

    def __init__(
        self,
        envelope: dict[str, Any],
        base: dict[str, Any],
        varying: dict[str, Any],
        shipment: _Checkpoints,
        upto: int,
        ts: int,
    ):
        self.envelope = envelope
        self.base = base
        self.varying = varying
        self.shipment = shipment
        self.upto = upto
        self.ts = ts

    def body(self) -> dict[str, Any]:
        msg = {**self.base, **self.varying, "checkpoints": self.shipment.items[: self.upto]}
        return {**self.envelope, "msg": msg, "ts": self.ts}

    def dumps(self) -> bytes:
        shipment = self.shipment
        if shipment.dumped is None:
            shipment.dumped = [orjson.dumps(c) for c in shipment.items]
        checkpoints = orjson.Fragment(b"[" + b",".join(shipment.dumped[: self.upto]) + b"]")
        msg = {**self.base, **self.varying, "checkpoints": checkpoints}
        return orjson.dumps({**self.envelope, "msg": msg, "ts": self.ts}, option=orjson.OPT_APPEND_NEWLINE)


@dataclass
class Chunk:
    """Everything one chunk of orders produced; each stream item is (epoch seconds, payload)."""

    index: int
    segment: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    aftership: list[tuple[int, TrackingUpdate]] = field(default_factory=list)
    twilio: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    emails: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    messages: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    feedback: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    truth_shipments: list[dict[str, Any]] = field(default_factory=list)
    truth_contacts: list[dict[str, Any]] = field(default_factory=list)
    truth_orders: list[dict[str, Any]] = field(default_factory=list)

    STREAMS = ("segment", "aftership", "twilio", "emails", "messages", "feedback")


# ---- business-day arithmetic ------------------------------------------------------------------------------

_SHIP_ALL = "1111111"
_SHIP_WEEKDAYS = "1111100"
_DELIVER_SAT = "1111110"


def _busday(days: np.ndarray, offset: np.ndarray | int, mask: str, epoch_day: np.datetime64) -> np.ndarray:
    d = (epoch_day + days.astype("timedelta64[D]")).astype("datetime64[D]")
    out = np.busday_offset(d, offset, roll="forward", weekmask=mask)
    return (out - epoch_day).astype(np.int64)


class _Builder:
    """Builds one chunk. Random numbers are drawn as arrays first, then records are assembled per order."""

    def __init__(self, plan: Plan, k: int):
        self.plan = plan
        self.p = plan.profile
        self.k = k
        self.rng = np.random.default_rng([plan.seed, 1, k])
        self.chunk = Chunk(index=k)
        self.lo = k * plan.chunk_orders
        self.hi = min(plan.orders, self.lo + plan.chunk_orders)
        self.seed = plan.seed
        self.epoch_day = np.datetime64("1970-01-01", "D")
        self._customers: dict[int, dict[str, Any]] = {}
        self._products: dict[int, dict[str, Any]] = {}
        self.msg_seq = 0

    def customer(self, c: int) -> dict[str, Any]:
        info = self._customers.get(c)
        if info is None:
            info = self.plan.customer(c)
            self._customers[c] = info
        return info

    # ------------------------------------------------------------------------------------------------------
    def build(self) -> Chunk:
        plan, p, rng = self.plan, self.p, self.rng
        n = self.hi - self.lo
        if n <= 0:
            return self.chunk
        start_day = plan.start_epoch // DAY_S
        day_idx = plan.order_day[self.lo : self.hi]
        cust = rng.integers(0, plan.customer_count, size=n)
        # the first orders of a brand-new shop go to distinct customers more often than not: fine either way
        offsets = (
            np.array(
                [
                    p.customers.countries[plan.countries[int(plan.cust_country[c])]].utc_offset_hours
                    for c in cust
                ]
            )
            * HOUR_S
        )
        local_hour = rng.choice(24, size=n, p=HOUR_WEIGHTS)
        placed = (
            (start_day + day_idx) * DAY_S + local_hour * HOUR_S + rng.integers(0, HOUR_S, size=n) - offsets
        ).astype(np.int64)
        placed = np.maximum(placed, (start_day + day_idx) * DAY_S)  # keep each order on its planned day
        carrier_idx = rng.choice(len(plan.carriers), size=n, p=plan.carrier_weights)
        n_items = 1 + rng.poisson(max(p.catalogue.items_per_order_mean - 1.0, 0.0), size=n)
        n_items = np.minimum(n_items, 8)
        total_items = int(n_items.sum())
        item_cat = rng.choice(len(plan.categories), size=total_items, p=plan.category_weights)
        item_pick = rng.random(total_items)
        qty = 1 + (rng.random(total_items) < 0.12).astype(np.int64)
        processing = np.maximum(1.0, rng.exponential(p.fulfilment.processing_hours_mean, size=n)) * HOUR_S
        label = placed + processing.astype(np.int64)

        # Per-order carrier/lane parameters (vectorised lookups).
        lanes = [plan.lane_of_country.get(plan.countries[int(plan.cust_country[c])]) for c in cust]
        peak_idx = plan.peak_of_day[day_idx]
        rates = np.zeros((n, 5))
        transit = np.zeros(n, dtype=np.int64)
        sat = np.zeros(n, dtype=bool)
        delay_mean = np.zeros(n)
        rate_names = ("delay", "failed_first_attempt", "lost", "damaged", "return_to_sender")
        cache: dict[tuple[int, str | None, int], tuple[np.ndarray, int, bool, float]] = {}
        for i in range(n):
            key = (int(carrier_idx[i]), lanes[i], int(peak_idx[i]))
            hit = cache.get(key)
            if hit is None:
                carrier = p.carriers[plan.carriers[key[0]]]
                lane = p.lanes.get(key[1]) if key[1] else None
                r = np.array([getattr(carrier.rates, name) for name in rate_names])
                extra = 0
                if lane is not None:
                    r = r * np.array([getattr(lane.rate_multipliers, name) for name in rate_names])
                    override = lane.carrier_rates.get(plan.carriers[key[0]])
                    if override is not None:
                        for j, name in enumerate(rate_names):
                            value = getattr(override, name)
                            if value is not None:
                                r[j] = value
                    extra += lane.transit_days_extra
                if key[2] >= 0:
                    peak = p.calendar.peaks[key[2]]
                    r[0] = r[0] * peak.delay_multiplier
                    extra += peak.transit_days_extra
                hit = (
                    np.minimum(r, 1.0),
                    carrier.transit_days + extra,
                    carrier.saturday_delivery,
                    carrier.delay_days_mean,
                )
                cache[key] = hit
            rates[i], transit[i], sat[i], delay_mean[i] = hit

        # Dispatch: the carrier collects at 17:30 local on the first shipping day whose labels are ready by 16:00.
        local_label = label + offsets.astype(np.int64)
        label_day = local_label // DAY_S - start_day
        late_label = (local_label % DAY_S) >= 16 * HOUR_S
        ship_mask = _SHIP_ALL if p.fulfilment.ships_on_weekends else _SHIP_WEEKDAYS
        pickup_day = _busday(
            start_day + label_day + late_label.astype(np.int64), 0, ship_mask, self.epoch_day
        )
        pickup = (
            pickup_day * DAY_S + int(17.5 * HOUR_S) - offsets.astype(np.int64) + rng.integers(0, 3600, size=n)
        )
        # The promise made at checkout uses the expected processing time, not the actual one.
        exp_local = placed + int(p.fulfilment.processing_hours_mean * HOUR_S) + offsets.astype(np.int64)
        exp_pick = _busday(
            exp_local // DAY_S + ((exp_local % DAY_S) >= 16 * HOUR_S), 0, ship_mask, self.epoch_day
        )
        promised_day = np.where(
            sat,
            _busday(exp_pick, np.maximum(transit, 1), _DELIVER_SAT, self.epoch_day),
            _busday(exp_pick, np.maximum(transit, 1), _SHIP_WEEKDAYS, self.epoch_day),
        )
        buffer = p.fulfilment.promise_buffer_days
        promised_to_day = np.where(
            sat,
            _busday(promised_day, buffer, _DELIVER_SAT, self.epoch_day),
            _busday(promised_day, buffer, _SHIP_WEEKDAYS, self.epoch_day),
        )
        promised_from = promised_day * DAY_S + 8 * HOUR_S - offsets.astype(np.int64)
        promised_to = promised_to_day * DAY_S + 20 * HOUR_S - offsets.astype(np.int64)

        # Outcomes.
        u_outcome = rng.random(n)
        lost = u_outcome < rates[:, 2]
        rts = (~lost) & (u_outcome < rates[:, 2] + rates[:, 4])
        delayed = rng.random(n) < rates[:, 0]
        damaged = (~lost) & (rng.random(n) < rates[:, 3])
        failed_first = (~lost) & (~rts) & (rng.random(n) < rates[:, 1])
        failed_second = failed_first & (rng.random(n) < 0.3)
        delay_days = np.where(
            delayed, np.maximum(1, np.round(rng.exponential(np.maximum(delay_mean, 0.1)))), 0
        ).astype(np.int64)
        nominal_day = np.where(
            sat,
            _busday(pickup_day, np.maximum(transit, 1), _DELIVER_SAT, self.epoch_day),
            _busday(pickup_day, np.maximum(transit, 1), _SHIP_WEEKDAYS, self.epoch_day),
        )
        first_attempt_day = np.where(
            sat,
            _busday(nominal_day, delay_days, _DELIVER_SAT, self.epoch_day),
            _busday(nominal_day, delay_days, _SHIP_WEEKDAYS, self.epoch_day),
        )
        second_attempt_day = np.where(
            sat,
            _busday(first_attempt_day, 1, _DELIVER_SAT, self.epoch_day),
            _busday(first_attempt_day, 1, _SHIP_WEEKDAYS, self.epoch_day),
        )
        wrong_item = rng.random(n) < p.fulfilment.wrong_item_rate
        invoice_missing = rng.random(n) < p.fulfilment.invoice_missing_rate
        show_delay_scan = rng.random(n) < 0.6
        lost_declared = rng.random(n) < 0.65  # the rest just go quiet and expire
        coupon = rng.random(n) < p.sessions.coupon_rate
        campaign_keys, campaign_w = _weights(p.sessions.campaigns)
        campaign = rng.choice(len(campaign_keys), size=n, p=campaign_w)
        views = rng.poisson(max(p.sessions.products_viewed_mean, 0.0), size=n)
        abandoned = rng.poisson(p.sessions.abandoned_per_order, size=n)
        hours_rand = rng.random((n, 16)).tolist()  # spare uniforms for times of day and small choices

        cols = {
            name: arr.tolist()
            for name, arr in {
                "cust": cust,
                "placed": placed,
                "carrier": carrier_idx,
                "peak": peak_idx,
                "label": label,
                "pickup": pickup,
                "promised_from": promised_from,
                "promised_to": promised_to,
                "lost": lost,
                "rts": rts,
                "delayed": delayed,
                "delay_days": delay_days,
                "damaged": damaged,
                "failed_first": failed_first,
                "failed_second": failed_second,
                "first_day": first_attempt_day,
                "second_day": second_attempt_day,
                "wrong_item": wrong_item,
                "invoice_missing": invoice_missing,
                "show_delay_scan": show_delay_scan,
                "lost_declared": lost_declared,
                "coupon": coupon,
                "campaign": campaign,
                "views": views,
                "abandoned": abandoned,
                "n_items": n_items,
            }.items()
        }
        item_cat_l, item_pick_l, qty_l = item_cat.tolist(), item_pick.tolist(), qty.tolist()
        category_products = [m.tolist() for m in plan.category_products]
        item_pos = 0
        for i in range(n):
            items = []
            for j in range(cols["n_items"][i]):
                members = category_products[item_cat_l[item_pos + j]]
                # squared uniform favours the first products of a category: best-sellers
                items.append(
                    (members[int(item_pick_l[item_pos + j] ** 2 * len(members))], qty_l[item_pos + j])
                )
            item_pos += cols["n_items"][i]
            self._order(
                i=i,
                c=cols["cust"][i],
                placed=cols["placed"][i],
                items=items,
                carrier=plan.carriers[cols["carrier"][i]],
                lane=lanes[i] or "default",
                peak=cols["peak"][i],
                label=cols["label"][i],
                pickup=cols["pickup"][i],
                promised_from=cols["promised_from"][i],
                promised_to=cols["promised_to"][i],
                lost=cols["lost"][i],
                rts=cols["rts"][i],
                delayed=cols["delayed"][i],
                delay_days=cols["delay_days"][i],
                damaged=cols["damaged"][i],
                failed_first=cols["failed_first"][i],
                failed_second=cols["failed_second"][i],
                first_attempt_day=cols["first_day"][i],
                second_attempt_day=cols["second_day"][i],
                wrong_item=cols["wrong_item"][i],
                invoice_missing=cols["invoice_missing"][i],
                show_delay_scan=cols["show_delay_scan"][i],
                lost_declared=cols["lost_declared"][i],
                coupon=cols["coupon"][i],
                campaign=campaign_keys[cols["campaign"][i]],
                views=cols["views"][i],
                abandoned=cols["abandoned"][i],
                u=hours_rand[i],
            )
        return self.chunk

    # ------------------------------------------------------------------------------------------------------
    def _order(
        self,
        *,
        i: int,
        c: int,
        placed: int,
        items: list[tuple[int, int]],
        carrier: str,
        lane: str,
        peak: int,
        label: int,
        pickup: int,
        promised_from: int,
        promised_to: int,
        lost: bool,
        rts: bool,
        delayed: bool,
        delay_days: int,
        damaged: bool,
        failed_first: bool,
        failed_second: bool,
        first_attempt_day: int,
        second_attempt_day: int,
        wrong_item: bool,
        invoice_missing: bool,
        show_delay_scan: bool,
        lost_declared: bool,
        coupon: bool,
        campaign: str,
        views: int,
        abandoned: int,
        u: list[float],
    ) -> None:
        plan, p, rng = self.plan, self.p, self.rng
        gi = self.lo + i
        cu = self.customer(c)
        order_id = plan.order_number(gi)

        currency = p.currency

        # ---- browsing and checkout (Segment) ----
        lines = []
        subtotal = 0
        for line_no, (prod, q) in enumerate(items, start=1):
            price = int(plan.product_price_minor[prod])
            subtotal += price * q
            lines.append(
                {
                    "product_id": f"P{prod + 1:05d}",
                    "sku": f"SKU-{prod + 1:05d}",
                    "name": plan.product_names[prod],
                    "category": plan.categories[int(plan.product_category[prod])],
                    "price": price / 100,
                    "quantity": q,
                    "position": line_no,
                }
            )
        discount = int(subtotal * 0.1) if coupon else 0
        shipping = 0 if subtotal >= 5000 else 495
        tax = round((subtotal - discount) * 0.19 / 1.19)
        total = subtotal - discount + shipping
        anon = _uuid(self.seed, "anon", gi)
        session_start = placed - 300 - int(u[0] * 2400)
        context = self._context(cu, campaign, gi, u, session_start=session_start)
        seg = self.chunk.segment
        t = session_start
        campaign_ctx = context.get("campaign")
        query = (
            (
                f"?utm_source={campaign_ctx['source']}&utm_medium={campaign_ctx['medium']}"
                f"&utm_campaign={campaign_ctx['name']}"
            )
            if campaign_ctx
            else ""
        )
        seg.append((t, self._page(anon, None, t, context, "Landing", f"https://{p.shop_domain}/{query}")))
        viewed = [prod for prod, _q in items] + [self._random_index(u[1 + k % 6]) for k in range(views)]
        step = max(20, (placed - 180 - session_start) // (len(viewed) + 3))
        for prod in viewed:
            t += step
            seg.append((t, self._track(anon, None, t, context, "Product Viewed", self._product(prod))))
        cart_id = _hex(self.seed, "cart", gi, n=16)
        for prod, q in items:
            t += 15
            seg.append(
                (
                    t,
                    self._track(
                        anon,
                        None,
                        t,
                        context,
                        "Product Added",
                        {"cart_id": cart_id, **self._product(prod), "quantity": q},
                    ),
                )
            )
        t += 20
        seg.append(
            (
                t,
                self._track(
                    anon,
                    None,
                    t,
                    context,
                    "Cart Viewed",
                    {"cart_id": cart_id, "products": lines, "currency": currency},
                ),
            )
        )
        t = max(t + 30, placed - 120)
        seg.append(
            (
                t,
                self._track(
                    anon,
                    None,
                    t,
                    context,
                    "Checkout Started",
                    {
                        "order_id": order_id,
                        "value": total / 100,
                        "revenue": (subtotal - discount) / 100,
                        "shipping": shipping / 100,
                        "tax": tax / 100,
                        "discount": discount / 100,
                        **({"coupon": "WELCOME10"} if coupon else {}),
                        "currency": currency,
                        "products": lines,
                    },
                ),
            )
        )
        traits = {
            "email": cu["email"],
            "firstName": cu["first_name"],
            "lastName": cu["last_name"],
            "name": cu["name"],
            "phone": cu["phone"],
            "locale": cu["locale"],
            "timezone": cu["timezone"],
            "address": {
                "street": cu["line1"],
                "city": cu["city"],
                "postalCode": cu["postcode"],
                "state": cu["region"],
                "country": cu["country"],
            },
            "preferred_channel": cu["preferred_channel"],
            "consent": {
                "marketing": cu["marketing_consent"],
                "email": True,
                "sms": cu["phone"] is not None,
                "whatsapp": cu["phone"] is not None and cu["whatsapp_opt_in"],
            },
        }
        seg.append((placed - 60, self._identify(anon, cu["user_id"], placed - 60, context, traits)))
        seg.append(
            (
                placed,
                self._track(
                    anon,
                    cu["user_id"],
                    placed,
                    context,
                    "Order Completed",
                    {
                        "checkout_id": cart_id,
                        "order_id": order_id,
                        "affiliation": p.name,
                        "total": total / 100,
                        "subtotal": subtotal / 100,
                        "revenue": (subtotal - discount) / 100,
                        "shipping": shipping / 100,
                        "tax": tax / 100,
                        "discount": discount / 100,
                        **({"coupon": "WELCOME10"} if coupon else {}),
                        "currency": currency,
                        "products": lines,
                        "email": cu["email"],
                        **({"phone": cu["phone"]} if cu["phone"] else {}),
                        "shipping_method": f"{carrier}_standard",
                        "carrier": carrier,
                        "shipping_address": {
                            "name": cu["name"],
                            "line1": cu["line1"],
                            "city": cu["city"],
                            "postcode": cu["postcode"],
                            "region": cu["region"],
                            "country": cu["country"],
                        },
                        "promised_delivery_from": iso(promised_from),
                        "promised_delivery_to": iso(promised_to),
                    },
                ),
            )
        )
        for a in range(abandoned):
            self._abandoned_session(cu, gi, a, placed, u)

        # ---- the parcel ----
        tracking_number = _tracking_number(carrier, self.seed, gi)
        scans = self._scans(
            cu,
            carrier,
            lane,
            label,
            pickup,
            lost,
            rts,
            delayed,
            damaged,
            failed_first,
            failed_second,
            first_attempt_day,
            second_attempt_day,
            show_delay_scan,
            lost_declared,
            u,
        )
        delivered_at = next((s[1] for s in scans if s[0] in ("delivered", "picked_up")), None)
        attempts = [s[1] for s in scans if s[0] in ("attempt_fail", "delivered") and s[1] > 0]
        first_attempt_at = attempts[0] if attempts else None
        self._aftership(gi, cu, order_id, carrier, tracking_number, scans, promised_to, placed, total)
        seg.append(
            (
                pickup,
                self._track(
                    anon,
                    cu["user_id"],
                    pickup,
                    None,
                    "Order Updated",
                    {
                        "order_id": order_id,
                        "status": "shipped",
                        "carrier": carrier,
                        "tracking_number": tracking_number,
                        "currency": currency,
                        "total": total / 100,
                    },
                ),
            )
        )

        late = delivered_at is not None and delivered_at > promised_to
        late_hours = max(0.0, (delivered_at - promised_to) / HOUR_S) if delivered_at is not None else None
        end_of_story = delivered_at or (scans[-1][1] if scans else placed)
        # ---- returns ----
        returned = False
        return_reason = None
        refund_at = None
        refund_slow = False
        if delivered_at is not None and not lost:
            reasons = []
            for prod, _q in items:
                cat_name = plan.categories[int(plan.product_category[prod])]
                cat = p.catalogue.categories[cat_name]
                if rng.random() < cat.return_rate:
                    keys, w = _weights(cat.return_reasons)
                    reasons.append((prod, keys[int(rng.choice(len(keys), p=w))]))
            if wrong_item:
                reasons = [(items[0][0], "wrong_item")]
            if reasons:
                returned = True
                return_reason = reasons[0][1]
                requested = delivered_at + int((1 + rng.exponential(3.0)) * DAY_S)
                refund_slow = rng.random() < p.returns.refund_slow_rate
                refund_days = (
                    p.returns.refund_slow_days
                    if refund_slow
                    else max(1.0, rng.exponential(p.returns.refund_days_mean))
                )
                refund_at = requested + int(refund_days * DAY_S)
                seg.append(
                    (
                        requested,
                        self._track(
                            None,
                            cu["user_id"],
                            requested,
                            None,
                            "Return Requested",
                            {
                                "order_id": order_id,
                                "reason": return_reason,
                                "products": [
                                    {"product_id": f"P{prod + 1:05d}", "reason": r} for prod, r in reasons
                                ],
                            },
                        ),
                    )
                )
                refunded = sum(int(plan.product_price_minor[prod]) for prod, _r in reasons)
                seg.append(
                    (
                        refund_at,
                        self._track(
                            None,
                            cu["user_id"],
                            refund_at,
                            None,
                            "Order Refunded",
                            {
                                "order_id": order_id,
                                "total": refunded / 100,
                                "currency": currency,
                                "reason": return_reason,
                                "products": [{"product_id": f"P{prod + 1:05d}"} for prod, _r in reasons],
                            },
                        ),
                    )
                )
                end_of_story = max(end_of_story, refund_at)
        if lost or rts:
            refund_at = (scans[-1][1] if scans else placed) + DAY_S
            seg.append(
                (
                    refund_at,
                    self._track(
                        None,
                        cu["user_id"],
                        refund_at,
                        None,
                        "Order Refunded",
                        {
                            "order_id": order_id,
                            "total": total / 100,
                            "currency": currency,
                            "reason": "lost_in_transit" if lost else "returned_to_sender",
                        },
                    ),
                )
            )

        # ---- contacts ----
        causes: list[tuple[str, int]] = []
        pc = p.contacts.probability
        if late and late_hours is not None and late_hours >= 3 and rng.random() < pc.late:
            causes.append(
                ("late", promised_to + int(HOUR_S * (2 + rng.random() * min(late_hours - 2.5, 40))))
            )
        failures = [s[1] for s in scans if s[0] in ("attempt_fail", "bad_address")]
        if failures and rng.random() < pc.failed_attempt:
            causes.append(("failed_attempt", failures[0] + int(HOUR_S * (1 + rng.random() * 5))))
        if damaged and delivered_at is not None and rng.random() < pc.damaged:
            causes.append(("damaged", delivered_at + int(HOUR_S * (1 + rng.random() * 20))))
        if lost and rng.random() < pc.lost:
            causes.append(("lost", promised_to + int(DAY_S * (1 + rng.random() * 3))))
        if refund_slow and refund_at is not None and rng.random() < pc.refund_slow:
            causes.append(("refund_slow", refund_at - int(DAY_S * (1 + rng.random() * 3))))
        if invoice_missing and delivered_at is not None and rng.random() < pc.invoice_missing:
            causes.append(("invoice_missing", delivered_at + int(DAY_S * (1 + rng.random() * 6))))
        if wrong_item and delivered_at is not None and rng.random() < pc.wrong_item:
            causes.append(("wrong_item", delivered_at + int(HOUR_S * (1 + rng.random() * 20))))
        if rng.random() < pc.none:
            causes.append(("none", placed + int(HOUR_S * (1 + rng.random() * 30))))
        contact_ids = []
        for cause, when in causes:
            contact_ids.append(self._contact(cu, order_id, cause, when, promised_from, placed))

        # ---- feedback ----
        penalty = 0.0
        problem = None
        for flag, pen, kind in (
            (lost, 3.0, "lost"),
            (rts, 1.8, "lost"),
            (damaged, 2.0, "damaged"),
            (wrong_item, 2.0, "wrong_item"),
            (late, 0.9 + 0.25 * min((late_hours or 0) / 24, 5), "late"),
            (failed_first, 0.6, "failed_attempt"),
            (refund_slow, 1.2, "return"),
            (returned and not refund_slow, 0.2, "return"),
        ):
            if flag:
                penalty += pen
                problem = problem or kind
        if any(cause != "none" for cause, _w in causes):
            penalty += 0.3
        csat = nps = review = None
        lang = cu["language"]
        fb_base = delivered_at if delivered_at is not None else promised_to + 3 * DAY_S
        if rng.random() < p.feedback.survey_rate * (1.0 if delivered_at is not None else 0.5):
            csat = min(5, max(1, round(4.55 - penalty + rng.normal(0, 0.75))))
            nps = min(10, max(0, round(csat * 2.2 - 1.2 + rng.normal(0, 1.3))))
            when = fb_base + int(p.feedback.survey_delay_days * DAY_S + rng.random() * 2 * DAY_S)
            kind = problem or ("great" if csat >= 4 else "ok")
            comment = text.comment(kind, lang=lang, rng=rng) if rng.random() < p.feedback.comment_rate else ""
            self.chunk.feedback.append(
                (
                    when,
                    {
                        "feedback_id": f"svy-{self.seed}-{gi + 1}",
                        "kind": "survey",
                        "order_id": order_id,
                        "customer_id": cu["user_id"],
                        "email": cu["email"],
                        "rating": csat,
                        "csat": csat,
                        "nps": nps,
                        "comment": comment,
                        "product_id": "",
                        "locale": cu["locale"],
                        "submitted_at": iso(when),
                    },
                )
            )
        review_p = p.feedback.review_rate * (1.0 + 1.5 * (penalty > 1.0))
        if rng.random() < review_p:
            review = min(5, max(1, round(4.5 - 1.1 * penalty + rng.normal(0, 0.8))))
            when = fb_base + int((1 + rng.random() * 9) * DAY_S)
            kind = problem or ("great" if review >= 4 else "ok")
            self.chunk.feedback.append(
                (
                    when,
                    {
                        "feedback_id": f"rev-{self.seed}-{gi + 1}",
                        "kind": "review",
                        "order_id": order_id,
                        "customer_id": cu["user_id"],
                        "email": cu["email"],
                        "rating": review,
                        "csat": "",
                        "nps": "",
                        "comment": text.comment(kind, lang=lang, rng=rng),
                        "product_id": f"P{items[0][0] + 1:05d}",
                        "locale": cu["locale"],
                        "submitted_at": iso(when),
                    },
                )
            )

        # ---- ground truth ----
        outcome = "lost" if lost else "returned_to_sender" if rts else "delivered"
        self.chunk.truth_shipments.append(
            {
                "order_id": order_id,
                "customer_id": cu["user_id"],
                "carrier": carrier,
                "tracking_number": tracking_number,
                "lane": lane,
                "destination_country": cu["country"],
                "peak": p.calendar.peaks[peak].name if peak >= 0 else "",
                "placed_at": iso(placed),
                "dispatched_at": iso(pickup),
                "promised_from": iso(promised_from),
                "promised_to": iso(promised_to),
                "first_attempt_at": iso(first_attempt_at) if first_attempt_at else "",
                "delivered_at": iso(delivered_at) if delivered_at is not None else "",
                "outcome": outcome,
                "delayed": int(delayed and not lost and not rts),
                "delay_days": delay_days if delayed and not lost and not rts else 0,
                "late": int(late),
                "late_hours": round(late_hours, 2) if late_hours is not None else "",
                "failed_first_attempt": int(failed_first or rts),
                "attempts": len(attempts),
                "lost": int(lost),
                "damaged": int(damaged),
                "returned_to_sender": int(rts),
                "dispatch_late": int(pickup > promised_from),
            }
        )
        unhappy = (csat is not None and csat < 4) or (review is not None and review <= 2)
        delivery_problem = (
            "lost"
            if lost
            else "returned_to_sender"
            if rts
            else "damaged"
            if damaged
            else "wrong_item"
            if wrong_item
            else "late"
            if late
            else "failed_attempt"
            if failed_first
            else None
        )
        real_contacts = [cause for cause, _w in causes]
        if delivery_problem:
            fell, reason = "delivery", delivery_problem
        elif real_contacts:
            fell, reason = "contact", real_contacts[0]
        elif returned:
            fell, reason = "return", return_reason or ""
        elif unhappy:
            fell, reason = "happy", "low_csat" if csat is not None and csat < 4 else "negative_review"
        else:
            fell, reason = "", ""
        owner = (
            {
                "lost": "carrier",
                "returned_to_sender": "carrier",
                "damaged": "carrier",
                "late": "carrier",
                "failed_attempt": "carrier",
                "wrong_item": "warehouse",
            }.get(reason)
            if fell == "delivery"
            else (
                CONTACT_OWNERS.get(reason, "")
                if fell == "contact"
                else "product"
                if fell == "return"
                else ""
                if not fell
                else (problem and CONTACT_OWNERS.get(problem, "product")) or "product"
            )
        )
        if fell == "delivery" and reason == "late" and not delayed and not failed_first:
            owner = "warehouse"  # dispatched late, not slow in transit
        self.chunk.truth_orders.append(
            {
                "order_id": order_id,
                "customer_id": cu["user_id"],
                "placed_at": iso(placed),
                "total": f"{total / 100:.2f}",
                "currency": currency,
                "items": sum(q for _p, q in items),
                "delivered": int(delivered_at is not None),
                "on_time": int(delivered_at is not None and not late),
                "contacted": int(bool(causes)),
                "contacts": len(contact_ids),
                "returned": int(returned),
                "return_reason": return_reason or "",
                "csat": csat if csat is not None else "",
                "nps": nps if nps is not None else "",
                "review_rating": review if review is not None else "",
                "happy": int(not unhappy),
                "perfect": int(not fell),
                "fell_off_at": fell,
                "fell_off_reason": reason,
                "owner": owner or "",
            }
        )

    # ---- Segment builders ---------------------------------------------------------------------------------
    def _context(
        self, cu: dict[str, Any], campaign: str, gi: int, u: list[float], *, session_start: int
    ) -> dict[str, Any]:
        source, medium = ref.CAMPAIGN_MEDIUM.get(campaign, (campaign, "referral"))
        ctx: dict[str, Any] = {
            # RudderStack's session id (session start in ms): the dashboard counts sessions by it
            "sessionId": session_start * 1000,
            "locale": cu["locale"],
            "timezone": cu["timezone"],
            "userAgent": ref.USER_AGENTS[int(u[2] * len(ref.USER_AGENTS))],
            "ip": f"10.{(gi >> 16) & 255}.{(gi >> 8) & 255}.{gi & 255}",
        }
        if source:
            name = ref.CAMPAIGN_NAMES[int(u[3] * len(ref.CAMPAIGN_NAMES))]
            ctx["campaign"] = {"name": name, "source": source, "medium": medium}
        return ctx

    def _base(
        self, kind: str, anon: str | None, user: str | None, t: int, context: dict[str, Any] | None
    ) -> dict[str, Any]:
        self.msg_seq += 1
        event: dict[str, Any] = {
            "type": kind,
            "messageId": f"sim-{self.seed}-{self.k}-{self.msg_seq}",
            "timestamp": iso(t),
        }
        if anon:
            event["anonymousId"] = anon
        if user:
            event["userId"] = user
        if context is not None:
            event["context"] = context  # shared by a session's events; never mutated after creation
        return event

    def _page(
        self, anon: str, user: str | None, t: int, context: dict[str, Any], name: str, url: str
    ) -> dict[str, Any]:
        event = self._base("page", anon, user, t, context)
        event["name"] = name
        event["properties"] = {"url": url, "path": "/", "title": self.p.name.title(), "referrer": ""}
        event["context"] = {**event["context"], "page": {"url": url, "path": "/"}}
        return event

    def _track(
        self,
        anon: str | None,
        user: str | None,
        t: int,
        context: dict[str, Any] | None,
        name: str,
        props: dict[str, Any],
    ) -> dict[str, Any]:
        event = self._base("track", anon, user, t, context)
        event["event"] = name
        event["properties"] = props
        return event

    def _identify(
        self, anon: str, user: str, t: int, context: dict[str, Any], traits: dict[str, Any]
    ) -> dict[str, Any]:
        event = self._base("identify", anon, user, t, context)
        event["traits"] = {k: v for k, v in traits.items() if v is not None}
        return event

    def _random_index(self, x: float) -> int:
        return int(x * x * len(self.plan.product_names))  # squared uniform: best-sellers first

    def _product(self, prod: int) -> dict[str, Any]:
        """A product's Segment properties (quantity 1), built once per chunk and shared by the events."""
        props = self._products.get(prod)
        if props is None:
            plan = self.plan
            props = self._products[prod] = {
                "product_id": f"P{prod + 1:05d}",
                "sku": f"SKU-{prod + 1:05d}",
                "name": plan.product_names[prod],
                "category": plan.categories[int(plan.product_category[prod])],
                "price": int(plan.product_price_minor[prod]) / 100,
                "quantity": 1,
                "currency": self.p.currency,
            }
        return props

    def _abandoned_session(self, cu: dict[str, Any], gi: int, a: int, placed: int, u: list[float]) -> None:
        anon = _uuid(self.seed, "anon-x", gi * 32 + a)
        t = placed - int((1 + u[4 + a % 4] * 9) * DAY_S) + a * 3600
        campaign = list(self.p.sessions.campaigns)[int(u[8] * len(self.p.sessions.campaigns))]
        context = self._context(cu, campaign, gi, u, session_start=t)
        self.chunk.segment.append(
            (t, self._page(anon, None, t, context, "Landing", f"https://{self.p.shop_domain}/"))
        )
        for k in range(1 + int(u[9 + a % 3] * 3)):
            t += 40 + int(u[12] * 90)
            self.chunk.segment.append(
                (
                    t,
                    self._track(
                        anon,
                        None,
                        t,
                        context,
                        "Product Viewed",
                        self._product(self._random_index(u[(k + a) % 16])),
                    ),
                )
            )
        if u[13] < 0.35:
            t += 30
            props = {
                "cart_id": _hex(self.seed, "cartx", gi * 32 + a, n=16),
                **self._product(self._random_index(u[14])),
            }
            self.chunk.segment.append((t, self._track(anon, None, t, context, "Product Added", props)))

    # ---- the parcel's scans ---------------------------------------------------------------------------------
    def _scans(
        self,
        cu: dict[str, Any],
        carrier: str,
        lane: str,
        label: int,
        pickup: int,
        lost: bool,
        rts: bool,
        delayed: bool,
        damaged: bool,
        failed_first: bool,
        failed_second: bool,
        first_day: int,
        second_day: int,
        show_delay_scan: bool,
        lost_declared: bool,
        u: list[float],
    ) -> list[tuple[str, int, str]]:
        """(stage, when, where) in time order; where is 'origin', 'hub', 'dest' or 'home'."""
        off = cu["utc_offset_s"]
        scans: list[tuple[str, int, str]] = [("info", label, "origin"), ("pickup", pickup, "origin")]
        hub_out = pickup + int((3 + u[5] * 3) * HOUR_S)
        scans.append(("hub_out", hub_out, "hub"))
        first_local_day = first_day * DAY_S - off
        if lane != "default" and cu["country"] != self.p.origin.country:
            border = hub_out + int((8 + u[6] * 10) * HOUR_S)
            scans.append(("border", border, "dest"))
        if delayed and show_delay_scan:
            scans.append(("delay", hub_out + int((10 + u[7] * 14) * HOUR_S), "hub"))
        if damaged:
            scans.append(("damaged", hub_out + int((4 + u[8] * 6) * HOUR_S), "hub"))
        if lost:
            if lost_declared:
                scans.append(("lost", max(first_local_day, hub_out) + int((5 + u[9] * 4) * DAY_S), "hub"))
            else:
                scans.append(("expired", hub_out + 30 * DAY_S, "hub"))
            return _monotonic(scans)
        hub_in = first_local_day - int((3 + u[10] * 5) * HOUR_S)
        scans.append(("hub_in", hub_in, "dest"))
        scans.append(("depot", first_local_day + int((5 + u[11]) * HOUR_S), "dest"))
        out = first_local_day + int((7 + u[12] * 1.5) * HOUR_S)
        scans.append(("out", out, "dest"))
        attempt = first_local_day + int((9.5 + u[13] * 9) * HOUR_S)
        if rts:
            scans.append(("bad_address", attempt, "home"))
            scans.append(("returning", attempt + int((14 + u[14] * 10) * HOUR_S), "dest"))
            scans.append(("returned", attempt + int((3 + u[15] * 3) * DAY_S), "origin"))
            return _monotonic(scans)
        if failed_first:
            scans.append(("attempt_fail", attempt, "home"))
            second_local = second_day * DAY_S - off
            scans.append(("out", second_local + int((7 + u[14] * 1.5) * HOUR_S), "dest"))
            attempt2 = second_local + int((9.5 + u[15] * 9) * HOUR_S)
            if failed_second:
                scans.append(("attempt_fail", attempt2, "home"))
                scans.append(("pickup_point", attempt2 + int(3 * HOUR_S), "dest"))
                scans.append(("picked_up", attempt2 + int((1 + u[14] * 3) * DAY_S), "dest"))
            else:
                scans.append(("delivered", attempt2, "home"))
            return _monotonic(scans)
        scans.append(("delivered", attempt, "home"))
        return _monotonic(scans)

    def _aftership(
        self,
        gi: int,
        cu: dict[str, Any],
        order_id: str,
        carrier: str,
        tracking_number: str,
        scans: list[tuple[str, int, str]],
        promised_to: int,
        placed: int,
        total: int,
    ) -> None:
        raw = ref.RAW_CODES.get(carrier, ref.GENERIC_RAW)
        origin = self.p.origin
        country3 = ref.ISO3.get(cu["country"], cu["country"])
        origin3 = ref.ISO3.get(origin.country, origin.country)
        checkpoints: list[dict[str, Any]] = []
        tracking_id = _hex(self.seed, "trk", gi)
        seen_tags: set[str] = set()
        expected = iso(promised_to)
        base = {
            "id": tracking_id,
            "tracking_number": tracking_number,
            "slug": carrier,
            "title": order_id,
            "order_id": order_id,
            "order_number": order_id,
            "order_promised_delivery_date": expected[:10],
            "expected_delivery": expected,
            "customer_name": cu["name"],
            "emails": [cu["email"]],
            "smses": [cu["phone"]] if cu["phone"] else [],
            "origin_country_iso3": origin3,
            "destination_country_iso3": country3,
            "destination_city": cu["city"],
            "destination_state": cu["region"],
            "destination_postal_code": cu["postcode"],
            "shipment_type": "standard",
            "shipment_package_count": 1,
            "created_at": iso(scans[0][1]),
            "custom_fields": {"order_id": order_id},
        }
        home = (
            cu["city"],
            cu["region"],
            cu["postcode"],
            country3,
            {"latitude": cu["latitude"], "longitude": cu["longitude"]},
        )
        at_origin = (
            origin.city,
            origin.region,
            origin.postcode,
            origin3,
            {"latitude": origin.latitude, "longitude": origin.longitude},
        )
        at_hub = (
            origin.city,
            origin.region,
            origin.postcode,
            origin3,
            {"latitude": round(origin.latitude + 0.05, 4), "longitude": round(origin.longitude + 0.05, 4)},
        )
        places = {"origin": at_origin, "hub": at_hub, "dest": home, "home": home}
        shipment = _Checkpoints(checkpoints)
        for stage, when, where in scans:
            tag, subtag, subtag_message = ref.STAGES[stage]
            raw_tag, message = raw.get(stage) or ref.GENERIC_RAW[stage]
            city, state, zip_, country, coordinate = places[where]
            when_iso = iso(when)
            checkpoints.append(
                {
                    "checkpoint_time": when_iso,
                    "tag": tag,
                    "subtag": subtag,
                    "raw_tag": raw_tag,
                    "message": message,
                    "location": f"{city}, {country}",
                    "city": city,
                    "state": state,
                    "zip": zip_,
                    "country_iso3": country,
                    "coordinate": coordinate,
                }
            )
            first_tag = tag not in seen_tags
            seen_tags.add(tag)
            if not first_tag and tag == "InTransit":
                continue  # further in-transit scans reach Doorstep in the next update's checkpoint history
            varying: dict[str, Any] = {
                "active": tag not in ("Delivered", "Expired") and subtag != "Exception_011",
                "tag": tag,
                "subtag": subtag,
                "subtag_message": subtag_message,
                "updated_at": when_iso,
            }
            if stage in ("delivered", "picked_up"):
                varying["signed_by"] = cu["last_name"]
            if stage in ("returning", "returned"):
                varying["return_to_sender"] = True
            envelope = {
                "event": "tracking_update",
                "event_id": _uuid(self.seed, "wh", gi * 64 + len(checkpoints)),
                "is_tracking_first_tag": first_tag,
            }
            self.chunk.aftership.append(
                (when, TrackingUpdate(envelope, base, varying, shipment, len(checkpoints), when))
            )

    # ---- contacts -----------------------------------------------------------------------------------------
    def _contact(
        self, cu: dict[str, Any], order_id: str, cause: str, when: int, promised_from: int, placed: int
    ) -> str:
        rng, pcon = self.rng, self.p.contacts
        if rng.random() < pcon.preferred_channel_share:
            channel = cu["preferred_channel"]
        else:
            keys, w = _weights(pcon.channels)
            channel = keys[int(rng.choice(len(keys), p=w))]
        if channel in ("sms", "whatsapp") and not cu["phone"]:
            channel = "email"
        lang = cu["language"]
        if lang not in text.CONTACT_TEMPLATES:
            lang = "en"
        days = max(1, (when - placed) // DAY_S)
        promised = iso(promised_from)[:10]
        casual = channel in ("sms", "whatsapp", "chat")
        body = text.contact_text(
            cause,
            lang=lang,
            order=order_id,
            first_name=cu["first_name"],
            promised=promised,
            days=int(days),
            rng=rng,
            typo_rate=pcon.typo_rate,
            casual=casual,
        )
        contact_id = f"con-{self.seed}-{self.k}-{len(self.chunk.truth_contacts) + 1}"
        messages = [(when, body)]
        if cause != "none" and rng.random() < pcon.follow_up_rate:
            messages.append(
                (
                    when + int((6 + rng.random() * 24) * HOUR_S),
                    text.follow_up_text(lang=lang, order=order_id, rng=rng),
                )
            )
        for seq, (t, message) in enumerate(messages):
            provider_id = self._send(cu, channel, t, message, cause, lang, order_id)
            self.chunk.truth_contacts.append(
                {
                    "contact_id": contact_id,
                    "message_id": provider_id,
                    "order_id": order_id,
                    "customer_id": cu["user_id"],
                    "channel": channel,
                    "sent_at": iso(t),
                    "cause": cause,
                    "owner": CONTACT_OWNERS[cause],
                    "is_follow_up": int(seq > 0),
                    "language": lang,
                    "text": message,
                }
            )
        return contact_id

    def _send(
        self, cu: dict[str, Any], channel: str, t: int, body: str, cause: str, lang: str, order_id: str
    ) -> str:
        self.msg_seq += 1
        if channel in ("sms", "whatsapp"):
            sid = "SM" + _hex(self.seed, "sms", self.k * 10_000_000 + self.msg_seq)
            prefix = "whatsapp:" if channel == "whatsapp" else ""
            form = {
                "MessageSid": sid,
                "SmsMessageSid": sid,
                "SmsSid": sid,
                "AccountSid": TWILIO_ACCOUNT_SID,
                "MessagingServiceSid": "",
                "From": prefix + cu["phone"],
                "To": prefix + SHOP_PHONE,
                "Body": body,
                "NumMedia": "0",
                "NumSegments": "1",
                "SmsStatus": "received",
                "ApiVersion": "2010-04-01",
                "FromCountry": cu["country"],
                "FromCity": cu["city"].upper(),
                "FromZip": cu["postcode"],
                "ToCountry": "DE",
            }
            if channel == "whatsapp":
                form["ProfileName"] = cu["first_name"]
                form["WaId"] = cu["phone"].lstrip("+")
            self.chunk.twilio.append((t, form))
            return f"{channel}:{sid}"
        if channel == "email":
            provider = f"{_hex(self.seed, 'mail', self.k * 10_000_000 + self.msg_seq, n=24)}@mail.{cu['email'].split('@')[1]}"
            # an inbound-parse body (Postmark's field names), as POST /webhooks/email takes it
            self.chunk.emails.append(
                (
                    t,
                    {
                        "From": f"{cu['name']} <{cu['email']}>",
                        "FromFull": {"Email": cu["email"], "Name": cu["name"]},
                        "To": f"support@{self.p.shop_domain}",
                        "Subject": text.subject(cause, lang=lang, order=order_id),
                        "TextBody": body,
                        "MessageID": provider,
                        "Date": _rfc2822(t),
                    },
                )
            )
            return f"email:{provider}"
        else:
            session = _uuid(self.seed, "chat", cu["index"])
            provider = _uuid(self.seed, "chatmsg", self.k * 10_000_000 + self.msg_seq)
            message = {
                "channel": "chat",
                "from": session,
                "to": self.p.shop_domain,
                "text": body,
                "provider_message_id": provider,
                "sent_at": iso(t),
                "user_id": cu["user_id"],
                "email": cu["email"],
            }
        self.chunk.messages.append((t, message))
        return f"{channel}:{provider}"


def _rfc2822(t: int) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


def _monotonic(scans: list[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    out = []
    last = 0
    for stage, when, where in scans:
        when = max(int(when), last + 600)
        out.append((stage, when, where))
        last = when
    return out


def _tracking_number(carrier: str, seed: int, gi: int) -> str:
    prefix, digits = ref.TRACKING_FORMATS.get(carrier, ("", 12))
    number = int(_hex(seed, "tn-" + carrier, gi, n=16), 16) % (10**digits)
    if carrier == "ups":
        return f"1Z{_base36(number).upper():0>16}"[:18]
    return f"{prefix}{number:0{digits}d}"


def build_chunk(plan: Plan, k: int) -> Chunk:
    return _Builder(plan, k).build()


class World:
    """A generated world, built chunk by chunk on demand (and kept when small)."""

    def __init__(self, plan: Plan, *, cache: bool | None = None):
        self.plan = plan
        self.profile = plan.profile
        self.seed = plan.seed
        self._cache: dict[int, Chunk] | None = (
            {} if (cache if cache is not None else plan.orders <= 50_000) else None
        )

    @property
    def orders(self) -> int:
        return self.plan.orders

    def chunk(self, k: int) -> Chunk:
        if self._cache is not None:
            hit = self._cache.get(k)
            if hit is None:
                hit = self._cache[k] = build_chunk(self.plan, k)
            return hit
        return build_chunk(self.plan, k)

    def chunks(self) -> Iterator[Chunk]:
        for k in range(self.plan.chunk_count):
            yield self.chunk(k)

    def customers(self) -> Iterator[dict[str, Any]]:
        for c in range(self.plan.customer_count):
            yield self.plan.customer(c)

    def products(self) -> Iterator[dict[str, Any]]:
        plan = self.plan
        for i, name in enumerate(plan.product_names):
            yield {
                "product_id": f"P{i + 1:05d}",
                "sku": f"SKU-{i + 1:05d}",
                "name": name,
                "category": plan.categories[int(plan.product_category[i])],
                "price": f"{int(plan.product_price_minor[i]) / 100:.2f}",
                "currency": plan.profile.currency,
            }

    def _stream(self, name: str) -> Iterator[Any]:
        for chunk in self.chunks():
            for _t, item in getattr(chunk, name):
                yield item.body() if name == "aftership" else item

    def segment_events(self) -> Iterator[dict[str, Any]]:
        return self._stream("segment")

    def aftership_webhooks(self) -> Iterator[dict[str, Any]]:
        return self._stream("aftership")

    def twilio_messages(self) -> Iterator[dict[str, str]]:
        return self._stream("twilio")

    def emails(self) -> Iterator[dict[str, Any]]:
        return self._stream("emails")

    def chat_messages(self) -> Iterator[dict[str, Any]]:
        return self._stream("messages")

    def feedback(self) -> Iterator[dict[str, Any]]:
        return self._stream("feedback")

    def truth_shipments(self) -> Iterator[dict[str, Any]]:
        for chunk in self.chunks():
            yield from chunk.truth_shipments

    def truth_contacts(self) -> Iterator[dict[str, Any]]:
        for chunk in self.chunks():
            yield from chunk.truth_contacts

    def truth_orders(self) -> Iterator[dict[str, Any]]:
        for chunk in self.chunks():
            yield from chunk.truth_orders

    def timeline(self) -> Iterator[tuple[int, str, Any]]:
        """Every outbound item in simulated-time order: (epoch seconds, stream name, payload)."""
        items: list[tuple[int, int, str, Any]] = []
        seq = 0
        for chunk in self.chunks():
            for name in Chunk.STREAMS:
                for t, payload in getattr(chunk, name):
                    items.append((t, seq, name, payload))
                    seq += 1
        heapq.heapify(items)
        while items:
            t, _seq, name, payload = heapq.heappop(items)
            yield t, name, payload.body() if name == "aftership" else payload


def generate(
    profile: Profile,
    orders: int | None = None,
    seed: int = 1,
    *,
    start: date | None = None,
    end: date | None = None,
    chunk_orders: int = CHUNK_ORDERS,
) -> World:
    """A world for `profile` with `orders` orders (default: the profile's) spread over its dates."""
    return World(
        make_plan(profile, orders=orders, seed=seed, start=start, end=end, chunk_orders=chunk_orders)
    )
