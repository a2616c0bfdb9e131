"""Message templates per trigger, channel and locale, rendered in a sandboxed Jinja2 environment (journey
editors are not trusted with Python), plus the context every template sees: customer, order, shipment,
the signed tracking link and action links, formatted in the customer's own time zone and language.

Variables: brand, lang, customer.{first_name,name}, order.{number,total,promised}, shipment.{carrier,
tracking_number,status,window}, event.<field>, tracking_url, actions.{reschedule,pickup_point,rebook,
instructions}, eta_window, new_window, pickup.{location,deadline}, delivered_at, proof.{url,recipient_name},
change_summary, label_url, refund_amount, survey_url, unsubscribe_url, text (conversation replies).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from doorstep.notifications.errors import TemplateInvalid
from doorstep.notifications.model import zone
from doorstep.security.links import sign

TEMPLATES_DIR = Path(__file__).parent / "templates"
LOCALES = ("en", "de")
SHORT_CHANNELS = ("sms", "whatsapp", "messenger", "webhook", "outbox")

DAY_NAMES = {
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
    "de": ("Mo.", "Di.", "Mi.", "Do.", "Fr.", "Sa.", "So."),
}
MONTH_NAMES_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_text_env = SandboxedEnvironment(autoescape=False, undefined=Undefined, keep_trailing_newline=False)
_html_env = SandboxedEnvironment(autoescape=True, undefined=Undefined)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None
    whatsapp_template: dict[str, Any] | None = None


@lru_cache(maxsize=8)
def load_templates(locale: str) -> dict[str, Any]:
    path = TEMPLATES_DIR / f"{locale}.yaml"
    if not path.exists():
        return {}
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


@lru_cache(maxsize=2048)
def _compile(source: str, is_html: bool) -> Any:
    return (_html_env if is_html else _text_env).from_string(source)


def _render(source: str, context: dict[str, Any], *, is_html: bool, where: str) -> str:
    try:
        return str(_compile(source, is_html).render(context)).strip()
    except TemplateError as exc:  # includes SecurityError from the sandbox
        raise TemplateInvalid(f"{where}: {exc}", field=where) from exc


def template_for(trigger: str, locale: str) -> dict[str, Any]:
    spec = load_templates(locale).get(trigger) or load_templates("en").get(trigger)
    if not spec:
        raise TemplateInvalid(f"trigger: no template for {trigger!r}", field="trigger")
    return dict(spec)


def render_message(
    trigger: str,
    channel: str,
    locale: str,
    context: dict[str, Any],
    *,
    override: dict[str, Any] | None = None,
) -> Rendered:
    """Renders one message. `override` (subject/text/html) replaces the stored template (preview, tests)."""
    locale = locale if locale in LOCALES else "en"
    spec = dict(override) if override else template_for(trigger, locale)
    per_channel = (spec.get("channels") or {}).get(channel) or {}
    spec.update(per_channel)
    context["lang"] = locale
    text_source = (
        spec.get("email_text") if channel == "email" and spec.get("email_text") else spec.get("text", "")
    )
    text = _render(text_source or "", context, is_html=False, where="text")
    subject = (
        _render(spec.get("subject", ""), context, is_html=False, where="subject")
        if spec.get("subject")
        else ""
    )
    html = None
    if channel == "email":
        content = _render(
            spec.get("html") or "<p>{{ text }}</p>", {**context, "text": text}, is_html=True, where="html"
        )
        layouts = load_templates(locale)
        layout = layouts.get("_layout_html") or load_templates("en")["_layout_html"]
        footer = _render(layouts.get("_footer", ""), context, is_html=False, where="footer")
        html = _render(
            layout, {**context, "content": Markup(content), "footer": footer}, is_html=True, where="layout"
        )
    wa = None
    if spec.get("whatsapp_template") and channel == "whatsapp":
        raw = spec["whatsapp_template"]
        wa = {
            "name": raw["name"],
            "language": raw.get("language", locale),
            "params": [
                _render(str(p), context, is_html=False, where="whatsapp_template")
                for p in raw.get("params", [])
            ],
        }
    return Rendered(subject=subject, text=text, html=html, whatsapp_template=wa)


def validate_template(spec: dict[str, Any]) -> None:
    """Compiles every part, so a broken template is refused when saved or previewed, not at 3 am."""
    for part in ("subject", "text", "html", "email_text"):
        if spec.get(part) is not None:
            try:
                _compile(str(spec[part]), part == "html")
            except TemplateError as exc:
                raise TemplateInvalid(f"{part}: {exc}", field=part) from exc


# ---- the context ----------------------------------------------------------------------------------------


def _as_dt(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def format_day_time(value: Any, *, tz_name: str | None, locale: str) -> str:
    dt = _as_dt(value)
    if dt is None:
        return ""
    local = dt.astimezone(zone(tz_name))
    day = DAY_NAMES.get(locale, DAY_NAMES["en"])[local.weekday()]
    if locale == "de":
        return f"{day} {local.day:02d}.{local.month:02d}., {local:%H:%M}"
    return f"{day} {local.day} {MONTH_NAMES_EN[local.month - 1]}, {local:%H:%M}"


def format_window(start: Any, end: Any, *, tz_name: str | None, locale: str) -> str:
    a, b = _as_dt(start), _as_dt(end)
    if a is None and b is None:
        return ""
    if a is None or b is None:
        return format_day_time(a or b, tz_name=tz_name, locale=locale)
    tz = zone(tz_name)
    la, lb = a.astimezone(tz), b.astimezone(tz)
    first = format_day_time(a, tz_name=tz_name, locale=locale)
    if la.date() == lb.date():
        return f"{first}–{lb:%H:%M}"
    return f"{first} – {format_day_time(b, tz_name=tz_name, locale=locale)}"


def format_money(amount: Any, currency: str | None, *, locale: str) -> str:
    try:
        value = Decimal(str(amount))
    except Exception:
        return f"{amount} {currency or ''}".strip()
    text = f"{value:,.2f}"
    if locale == "de":
        text = text.replace(",", "_").replace(".", ",").replace("_", ".")
        return f"{text} {currency or ''}".strip()
    return f"{currency or ''} {text}".strip()


CHANGE_SUMMARIES = {
    "en": {
        "slot": "New delivery slot: {when}",
        "pickup_point": "Your parcel goes to a pickup point{where}",
        "safe_place": "Safe place noted{where}",
        "neighbour": "We'll leave it with your neighbour{where}",
        "instructions": "Delivery instructions saved",
    },
    "de": {
        "slot": "Neues Zustellfenster: {when}",
        "pickup_point": "Ihr Paket geht an eine Abholstation{where}",
        "safe_place": "Ablageort gespeichert{where}",
        "neighbour": "Wir geben es bei Ihrem Nachbarn ab{where}",
        "instructions": "Zustellhinweis gespeichert",
    },
}


def change_summary(kind: str, detail: dict[str, Any], *, tz_name: str | None, locale: str) -> str:
    table = CHANGE_SUMMARIES.get(locale, CHANGE_SUMMARIES["en"])
    when = format_window(
        detail.get("from") or detail.get("slot_from") or detail.get("date"),
        detail.get("to") or detail.get("slot_to"),
        tz_name=tz_name,
        locale=locale,
    )
    where_value = detail.get("name") or detail.get("location") or detail.get("place") or detail.get("address")
    where = f": {where_value}" if where_value else ""
    return table.get(kind, "{kind}").format(when=when or "", where=where, kind=kind)


SIGNED_CACHE_TTL_S = (
    3600.0  # a token re-used for an hour is still valid for weeks (links carry their own age)
)
_signed_cache: dict[tuple[str, str, str], tuple[float, str]] = {}


def signed(secret: str, purpose: str, subject: str) -> str:
    """doorstep.security.links.sign, cached briefly: signing costs a key derivation, and a busy sender signs
    three links per message."""
    key = (secret, purpose, subject)
    hit = _signed_cache.get(key)
    now = time.monotonic()
    if hit is not None and hit[0] > now:
        return hit[1]
    token = sign(secret, purpose, subject)
    if len(_signed_cache) > 50_000:
        _signed_cache.clear()
    _signed_cache[key] = (now + SIGNED_CACHE_TTL_S, token)
    return token


def links(
    settings: Any, *, order_id: str | None, customer_id: str, channel: str, topic: str
) -> dict[str, Any]:
    """The signed tracking link and the action links built on it, plus survey and unsubscribe links."""
    base = settings.public_base_url.rstrip("/")
    secret = settings.secret_key
    tracking_url = f"{base}/t/{signed(secret, 'track', order_id)}" if order_id else base
    actions = {
        a: f"{tracking_url}?action={a}"
        for a in ("reschedule", "pickup_point", "rebook", "instructions", "return")
    }
    return {
        "tracking_url": tracking_url,
        "actions": actions,
        "survey_url": f"{base}/s/{signed(secret, 'survey', order_id)}" if order_id else base,
        "unsubscribe_url": unsubscribe_url(settings, customer_id=customer_id, channel=channel, topic=topic),
    }


def unsubscribe_url(settings: Any, *, customer_id: str, channel: str, topic: str) -> str:
    token = signed(settings.secret_key, "unsubscribe", f"{customer_id}|{channel}|{topic}")
    return f"{settings.public_base_url.rstrip('/')}/u/{token}"


def first_name(name: str | None) -> str:
    return (name or "").split(" ")[0] if name else ""


def build_context(
    settings: Any,
    *,
    trigger: str,
    channel: str,
    locale: str,
    topic: str,
    customer: dict[str, Any],
    order: dict[str, Any] | None,
    shipment: dict[str, Any] | None,
    event: dict[str, Any],
    proof: dict[str, Any] | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    tz = customer.get("timezone")
    order = order or {}
    shipment = shipment or {}
    order_id = order.get("id") or event.get("order_id")
    ctx_links = links(settings, order_id=order_id, customer_id=customer["id"], channel=channel, topic=topic)
    fmt: dict[str, Any] = {"tz_name": tz, "locale": locale}
    total = (
        format_money(Decimal(order["total_minor"]) / 100, order.get("currency"), locale=locale)
        if order.get("total_minor") is not None
        else ""
    )
    return {
        "brand": settings.brand_name,
        "customer": {
            "first_name": first_name(customer.get("name")) or ("Hallo" if locale == "de" else "there"),
            "name": customer.get("name") or "",
        },
        "order": {
            "number": order.get("external_id") or event.get("external_id") or "",
            "total": total,
            "promised": format_window(order.get("promised_from"), order.get("promised_to"), **fmt),
        },
        "shipment": {
            "carrier": (shipment.get("carrier") or "").upper(),
            "tracking_number": shipment.get("tracking_number") or "",
            "status": shipment.get("status") or "",
            "window": format_window(
                shipment.get("predicted_from") or shipment.get("promised_from"),
                shipment.get("predicted_to") or shipment.get("promised_to"),
                **fmt,
            ),
        },
        "event": event,
        **ctx_links,
        "eta_window": format_window(event.get("eta_from"), event.get("eta_to"), **fmt),
        "new_window": format_window(event.get("predicted_from"), event.get("predicted_to"), **fmt),
        "pickup": {
            "location": event.get("location") or "",
            "deadline": format_day_time(event.get("pickup_deadline"), **fmt),
        },
        "delivered_at": format_day_time(event.get("delivered_at") or shipment.get("delivered_at"), **fmt),
        "proof": {
            "url": ctx_links["tracking_url"] + "#proof",
            "recipient_name": (proof or {}).get("recipient_name") or "",
        },
        "change_summary": change_summary(str(event.get("kind", "")), dict(event.get("detail") or {}), **fmt),
        "label_url": ctx_links["tracking_url"] + "?action=return_label",
        "refund_amount": format_money(event.get("amount"), event.get("currency"), locale=locale)
        if event.get("amount")
        else "",
        "text": text or "",
    }


SAMPLE_ORDER_ID = "0190f0d0-0000-7000-8000-000000000001"


def sample_context(settings: Any, *, trigger: str, channel: str, locale: str) -> dict[str, Any]:
    """Made-up but realistic data for the preview endpoint."""
    event = {
        "order_id": SAMPLE_ORDER_ID,
        "shipment_id": "sample-shipment",
        "customer_id": "sample-customer",
        "external_id": "#1042",
        "eta_from": "2026-11-28T09:40:00+00:00",
        "eta_to": "2026-11-28T10:20:00+00:00",
        "predicted_from": "2026-11-27T08:00:00+00:00",
        "predicted_to": "2026-11-27T12:00:00+00:00",
        "promised_to": "2026-11-26T18:00:00+00:00",
        "delay_hours": 18.0,
        "reason": "missed connection at hub",
        "location": "Kiosk Nord, Hauptstr. 5",
        "pickup_deadline": "2026-12-02T18:00:00+00:00",
        "delivered_at": "2026-11-28T10:02:00+00:00",
        "kind": "slot",
        "detail": {"from": "2026-11-29T09:00:00+00:00", "to": "2026-11-29T13:00:00+00:00"},
        "method": "drop_off",
        "tracking_number": "RET123456",
        "amount": "59.90",
        "currency": "EUR",
    }
    return build_context(
        settings,
        trigger=trigger,
        channel=channel,
        locale=locale,
        topic="service",
        customer={"id": "sample-customer", "name": "Maya Schmidt", "timezone": "Europe/Berlin"},
        order={
            "id": SAMPLE_ORDER_ID,
            "external_id": "#1042",
            "total_minor": 8990,
            "currency": "EUR",
            "promised_from": "2026-11-26T08:00:00+00:00",
            "promised_to": "2026-11-26T18:00:00+00:00",
        },
        shipment={
            "carrier": "dhl",
            "tracking_number": "00340434161234567890",
            "status": "InTransit",
            "predicted_from": "2026-11-27T08:00:00+00:00",
            "predicted_to": "2026-11-27T12:00:00+00:00",
        },
        event=event,
        proof={"recipient_name": "M. Schmidt"},
        text="Yes, your return arrived on Monday; the refund follows within 3 days.",
    )


def available_triggers() -> list[str]:
    return sorted(k for k in load_templates("en") if not k.startswith("_"))


__all__ = ["LOCALES", "Rendered", "StrictUndefined", "build_context", "render_message", "sample_context"]
