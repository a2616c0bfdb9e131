"""Simulation profiles: the YAML that describes a retailer's world, validated before anything is generated.

Every key is checked (unknown keys are refused, so a typo never silently falls back to a default), every rate
is a probability in [0, 1], every weight is non-negative, and date ranges run forwards. A problem is reported
as the dotted key path and what that key allows, for example
``carriers.dhl.rates.delay: 1.5 is not allowed; allowed range 0 to 1``.
"""

from __future__ import annotations

from datetime import date
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from doorstep.simulator.errors import ProfileInvalid, ProfileNotFound

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Weight = Annotated[float, Field(ge=0.0, le=1_000_000.0)]
Multiplier = Annotated[float, Field(ge=0.0, le=100.0)]
Hours = Annotated[float, Field(ge=0.0, le=24.0 * 60)]
Days = Annotated[int, Field(ge=0, le=60)]

SHIPPED_PROFILES = ("boutique", "large")
CONTACT_CAUSES = (
    "late",
    "failed_attempt",
    "damaged",
    "lost",
    "refund_slow",
    "invoice_missing",
    "wrong_item",
    "none",
)
CHANNELS = ("email", "whatsapp", "sms", "chat")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _positive_total(weights: dict[str, float], what: str) -> dict[str, float]:
    if weights and sum(weights.values()) <= 0:
        raise ValueError(f"{what} weights must not all be 0")
    return weights


class Country(Strict):
    weight: Weight
    locale: str = Field(pattern=r"^[a-z]{2}-[A-Z]{2}$")
    timezone: str
    utc_offset_hours: Annotated[float, Field(ge=-12, le=14)]  # winter offset; the simulator ignores DST


class Customers(Strict):
    orders_per_customer: Annotated[float, Field(ge=1.0, le=50.0)] = 1.5
    countries: dict[str, Country]
    channel_preferences: dict[str, Weight] = {"email": 0.5, "whatsapp": 0.3, "sms": 0.2}
    marketing_consent: Probability = 0.5
    whatsapp_opt_in: Probability = 0.8  # among those who prefer WhatsApp
    phone_shared: Probability = 0.85

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: dict[str, Country]) -> dict[str, Country]:
        if not value:
            raise ValueError("at least one country is needed")
        for code in value:
            if len(code) != 2 or not code.isupper():
                raise ValueError(f"country keys are ISO 3166 alpha-2 codes such as DE; got {code!r}")
        if sum(c.weight for c in value.values()) <= 0:
            raise ValueError("country weights must not all be 0")
        return value

    @field_validator("channel_preferences")
    @classmethod
    def _channels(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - {"email", "whatsapp", "sms"})
        if unknown:
            raise ValueError(f"unknown channel {unknown[0]!r}; allowed: email, whatsapp, sms")
        return _positive_total(value, "channel_preferences")


class Category(Strict):
    weight: Weight
    price_min: Annotated[float, Field(gt=0, le=100_000)]
    price_max: Annotated[float, Field(gt=0, le=100_000)]
    return_rate: Probability = 0.05
    return_reasons: dict[str, Weight] = {"changed_mind": 1.0}

    @model_validator(mode="after")
    def _prices(self) -> Category:
        if self.price_max < self.price_min:
            raise ValueError(f"price_max ({self.price_max}) is below price_min ({self.price_min})")
        _positive_total(self.return_reasons, "return_reasons")
        return self


class Catalogue(Strict):
    products: Annotated[int, Field(ge=1, le=1_000_000)] = 200
    categories: dict[str, Category]
    items_per_order_mean: Annotated[float, Field(ge=1.0, le=20.0)] = 1.6

    @field_validator("categories")
    @classmethod
    def _categories(cls, value: dict[str, Category]) -> dict[str, Category]:
        if not value or sum(c.weight for c in value.values()) <= 0:
            raise ValueError("at least one category with a weight above 0 is needed")
        return value


class Sessions(Strict):
    abandoned_per_order: Annotated[float, Field(ge=0.0, le=20.0)] = 1.0
    products_viewed_mean: Annotated[float, Field(ge=0.0, le=50.0)] = 2.0
    campaigns: dict[str, Weight] = {"direct": 1.0}
    coupon_rate: Probability = 0.1

    @field_validator("campaigns")
    @classmethod
    def _campaigns(cls, value: dict[str, float]) -> dict[str, float]:
        return _positive_total(value, "campaigns")


class Peak(Strict):
    name: str
    start: date
    end: date
    order_multiplier: Multiplier = 2.0
    delay_multiplier: Multiplier = 1.5
    transit_days_extra: Days = 0

    @model_validator(mode="after")
    def _range(self) -> Peak:
        if self.end < self.start:
            raise ValueError(
                f"end ({self.end}) is before start ({self.start}); end must be on or after start"
            )
        return self


class Calendar(Strict):
    weekday_weights: dict[str, Weight] = {d: 1.0 for d in WEEKDAYS}
    peaks: list[Peak] = []

    @field_validator("weekday_weights")
    @classmethod
    def _weekdays(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(WEEKDAYS))
        if unknown:
            raise ValueError(f"unknown weekday {unknown[0]!r}; allowed: {', '.join(WEEKDAYS)}")
        return _positive_total({d: value.get(d, 1.0) for d in WEEKDAYS}, "weekday_weights")


class Origin(Strict):
    country: str = Field(pattern=r"^[A-Z]{2}$")
    city: str
    region: str
    postcode: str
    latitude: Annotated[float, Field(ge=-90, le=90)] = 0.0
    longitude: Annotated[float, Field(ge=-180, le=180)] = 0.0


class Fulfilment(Strict):
    processing_hours_mean: Hours = 16.0
    ships_on_weekends: bool = False
    wrong_item_rate: Probability = 0.003
    invoice_missing_rate: Probability = 0.01
    promise_buffer_days: Days = (
        1  # the window promised at checkout is this many business days wider than nominal
    )


class Rates(Strict):
    delay: Probability = 0.05
    failed_first_attempt: Probability = 0.04
    lost: Probability = 0.002
    damaged: Probability = 0.005
    return_to_sender: Probability = 0.003


class RateOverrides(Strict):
    delay: Probability | None = None
    failed_first_attempt: Probability | None = None
    lost: Probability | None = None
    damaged: Probability | None = None
    return_to_sender: Probability | None = None


class RateMultipliers(Strict):
    delay: Multiplier = 1.0
    failed_first_attempt: Multiplier = 1.0
    lost: Multiplier = 1.0
    damaged: Multiplier = 1.0
    return_to_sender: Multiplier = 1.0


class Carrier(Strict):
    weight: Weight
    name: str
    transit_days: Annotated[int, Field(ge=0, le=30)] = 1  # nominal business days from dispatch, domestic
    saturday_delivery: bool = False
    rates: Rates = Rates()
    delay_days_mean: Annotated[float, Field(ge=0.0, le=30.0)] = 1.5  # extra days when a parcel is delayed
    pickup_point_after_attempts: Annotated[int, Field(ge=1, le=5)] = 2


class Lane(Strict):
    countries: list[str]
    transit_days_extra: Days = 0
    rate_multipliers: RateMultipliers = RateMultipliers()
    carrier_rates: dict[str, RateOverrides] = {}  # absolute rates for a carrier on this lane


class Returns(Strict):
    window_days: Annotated[int, Field(ge=1, le=365)] = 30
    refund_days_mean: Annotated[float, Field(ge=0.0, le=60.0)] = 5.0
    refund_slow_rate: Probability = 0.1
    refund_slow_days: Annotated[float, Field(ge=1.0, le=120.0)] = 14.0


class ContactProbabilities(Strict):
    late: Probability = 0.35
    failed_attempt: Probability = 0.3
    damaged: Probability = 0.7
    lost: Probability = 0.85
    refund_slow: Probability = 0.5
    invoice_missing: Probability = 0.4
    wrong_item: Probability = 0.9
    none: Probability = 0.03


class Contacts(Strict):
    probability: ContactProbabilities = ContactProbabilities()
    channels: dict[str, Weight] = {"email": 0.4, "whatsapp": 0.3, "chat": 0.2, "sms": 0.1}
    preferred_channel_share: Probability = 0.6  # how often a customer writes on their preferred channel
    follow_up_rate: Probability = 0.3
    typo_rate: Probability = 0.15

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(CHANNELS))
        if unknown:
            raise ValueError(f"unknown channel {unknown[0]!r}; allowed: {', '.join(CHANNELS)}")
        return _positive_total(value, "channels")


class Feedback(Strict):
    survey_rate: Probability = 0.25
    review_rate: Probability = 0.08
    survey_delay_days: Annotated[float, Field(ge=0.0, le=60.0)] = 2.0
    comment_rate: Probability = 0.6


class Profile(Strict):
    name: str
    description: str = ""
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    shop_domain: str = "shop.example"
    order_prefix: str = "SO-"
    start: date
    end: date
    orders: Annotated[int, Field(ge=1, le=100_000_000)] = 1000
    customers: Customers
    catalogue: Catalogue
    sessions: Sessions = Sessions()
    calendar: Calendar = Calendar()
    origin: Origin
    fulfilment: Fulfilment = Fulfilment()
    carriers: dict[str, Carrier]
    lanes: dict[str, Lane] = {}
    returns: Returns = Returns()
    contacts: Contacts = Contacts()
    feedback: Feedback = Feedback()

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) is not after start ({self.start}); end must be after start")
        if not self.carriers or sum(c.weight for c in self.carriers.values()) <= 0:
            raise ValueError("carriers: at least one carrier with a weight above 0 is needed")
        for lane_name, lane in self.lanes.items():
            for carrier in lane.carrier_rates:
                if carrier not in self.carriers:
                    raise ValueError(
                        f"lanes.{lane_name}.carrier_rates.{carrier}: unknown carrier; "
                        f"allowed: {', '.join(self.carriers)}"
                    )
            for country in lane.countries:
                if country not in self.customers.countries:
                    raise ValueError(
                        f"lanes.{lane_name}.countries: {country} is not in customers.countries "
                        f"({', '.join(self.customers.countries)})"
                    )
        return self

    def with_dates(self, start: date, end: date) -> Profile:
        return self.model_copy(update={"start": start, "end": end})


# ---- loading and error messages -------------------------------------------------------------------------


def available_profiles() -> list[str]:
    return list(SHIPPED_PROFILES)


def load_profile(name_or_path: str | Path) -> Profile:
    """A shipped profile by name (`boutique`, `large`) or a YAML file by path; raises ProfileInvalid."""
    text, where = _read(name_or_path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileInvalid(f"{where}: not valid YAML: {exc}", problems=[str(exc)]) from None
    return parse_profile(data, where=where)


def parse_profile(data: Any, *, where: str = "profile") -> Profile:
    if not isinstance(data, dict):
        raise ProfileInvalid(
            f"{where}: expected a mapping of keys at the top", problems=["top level: mapping"]
        )
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors(include_url=False)]
        raise ProfileInvalid(
            f"{where} is invalid ({len(problems)} problem{'s' if len(problems) != 1 else ''}): "
            + "; ".join(problems),
            problems=problems,
        ) from None


def _read(name_or_path: str | Path) -> tuple[str, str]:
    path = Path(name_or_path)
    if str(name_or_path) in SHIPPED_PROFILES:
        res = resources.files("doorstep.simulator") / "profiles" / f"{name_or_path}.yaml"
        return res.read_text(encoding="utf-8"), f"profile {name_or_path}"
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise ProfileNotFound(f"profile file {path} does not exist")
        return path.read_text(encoding="utf-8"), str(path)
    raise ProfileNotFound(
        f"unknown profile {name_or_path!r}: use one of {', '.join(SHIPPED_PROFILES)} or a path to a .yaml file"
    )


def _describe(error: Any) -> str:
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc) or "profile"
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
        return f"{key}: unknown key{hint}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        low, high = _bounds(loc)
        return f"{key}: {value!r} is not allowed; allowed range {_range_text(low, high, kind)}"
    if kind == "missing":
        return f"{key}: required key is missing"
    if kind == "value_error":
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        return f"{key}: {message}" if key != "profile" else message
    return f"{key}: {error.get('msg')} (got {value!r})"


def _range_text(low: float | None, high: float | None, kind: str) -> str:
    strict_low = kind == "greater_than"
    if low is not None and high is not None:
        return f"{_num(low)} to {_num(high)}" + (" (exclusive of the minimum)" if strict_low else "")
    if low is not None:
        return f"{'above' if strict_low else 'at least'} {_num(low)}"
    if high is not None:
        return f"at most {_num(high)}"
    return "see the profile documentation"


def _num(x: float) -> str:
    return f"{x:g}"


def _field_at(loc: list[str]) -> FieldInfo | None:
    """The pydantic FieldInfo at a key path, walking nested models, dicts and lists."""
    annotation: Any = Profile
    info: FieldInfo | None = None
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            info = annotation.model_fields.get(part)
            if info is None:
                return None
            annotation = info.annotation
            continue
        origin = get_origin(annotation)
        args = get_args(annotation)
        if origin is dict and len(args) == 2:
            annotation = args[1]
            info = FieldInfo.from_annotation(args[1])
        elif origin is list and args:
            annotation = args[0]
            info = FieldInfo.from_annotation(args[0])
        else:
            return info
    return info


def _unwrap(annotation: Any) -> Any:
    args = get_args(annotation)
    if args and type(None) in args:  # Optional[X]
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else annotation
    return annotation


def _bounds(loc: list[str]) -> tuple[float | None, float | None]:
    info = _field_at(loc)
    low = high = None
    if info is None:
        return None, None
    metadata = list(info.metadata)
    annotation = _unwrap(info.annotation)
    for arg in get_args(annotation)[1:]:  # Annotated[float, FieldInfo] hidden in Optional
        metadata.extend(getattr(arg, "metadata", []) or [])
    for item in metadata:
        if isinstance(item, annotated_types.Ge | annotated_types.Gt):
            low = float(item.ge if isinstance(item, annotated_types.Ge) else item.gt)  # type: ignore[arg-type]
        if isinstance(item, annotated_types.Le | annotated_types.Lt):
            high = float(item.le if isinstance(item, annotated_types.Le) else item.lt)  # type: ignore[arg-type]
    return low, high


def _allowed_keys(loc: list[str]) -> list[str]:
    if not loc:
        return list(Profile.model_fields)
    info = _field_at(loc)
    annotation = _unwrap(info.annotation) if info is not None else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []
