"""The driver's mobile page (/driver, role driver) and the admin and staff APIs of the last mile: rounds,
slots, delivery changes on behalf of a customer."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from doorstep.context import CtxDep
from doorstep.security.deps import require
from doorstep.security.model import Principal, Role, Scope
from doorstep.shipments.delivery import FAILURE_REASONS, InvalidChange
from doorstep.shipments.handlers_lastmile import (
    MAX_PHOTO_BYTES,
    assign_stops,
    change_delivery,
    create_slots,
    decode_signature,
    depart,
    list_slots,
    load_shipment,
    record_failure,
    record_proof,
    todays_stops,
)
from doorstep.web.pages import staff_page
from doorstep.web.templating import render

router = APIRouter()
DriverDep = Annotated[Principal, Depends(staff_page(Role.DRIVER))]


def _route_date(ctx: Any, value: str | None) -> date:
    if not value:
        return ctx.clock.now().date()
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidChange("date must look like 2026-11-23", field="date") from exc


@router.get("/driver", include_in_schema=False)
def driver_page(request: Request, ctx: CtxDep, principal: DriverDep, date: str | None = None) -> Response:
    day = _route_date(ctx, date)
    with ctx.read_engine.connect() as conn:
        stops = todays_stops(conn, driver_id=principal.id, route_date=day)
    waiting = sum(1 for s in stops if s["status"] == "assigned")
    return render(
        request, "driver/page.html", stops=stops, day=day, waiting=waiting, failure_reasons=FAILURE_REASONS
    )


@router.post("/driver/depart", include_in_schema=False)
def driver_depart(ctx: CtxDep, principal: DriverDep, date: Annotated[str, Form()] = "") -> Response:
    day = _route_date(ctx, date or None)
    depart(ctx, driver_id=principal.id, route_date=day)
    return RedirectResponse(f"/driver?date={day.isoformat()}", status_code=303)


@router.post("/driver/stops/{assignment_id}/proof", include_in_schema=False)
async def driver_proof(
    assignment_id: str,
    ctx: CtxDep,
    principal: DriverDep,
    recipient_name: Annotated[str, Form(max_length=200)] = "",
    signature: Annotated[str, Form(max_length=800_000)] = "",
    latitude: Annotated[float | None, Form()] = None,
    longitude: Annotated[float | None, Form()] = None,
    photo: Annotated[UploadFile | None, File()] = None,
) -> Any:
    data = None
    if photo is not None and photo.filename:
        data = await photo.read(MAX_PHOTO_BYTES + 1)
        if not data:
            data = None
    proof_id = record_proof(
        ctx,
        driver_id=principal.id,
        assignment_id=assignment_id,
        recipient_name=recipient_name,
        photo=data,
        signature_png=decode_signature(signature or None),
        latitude=latitude,
        longitude=longitude,
    )
    if ctx.services.get("wake_worker"):
        ctx.services["wake_worker"]()
    return {"proof_id": proof_id, "status": "delivered"}


@router.post("/driver/stops/{assignment_id}/failure", include_in_schema=False)
def driver_failure(
    assignment_id: str,
    ctx: CtxDep,
    principal: DriverDep,
    reason: Annotated[str, Form(max_length=50)],
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    record_failure(ctx, driver_id=principal.id, assignment_id=assignment_id, reason=reason, note=note or None)
    return RedirectResponse("/driver", status_code=303)


# ---- APIs ---------------------------------------------------------------------------------------------------


class RoundCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    driver_id: str = Field(max_length=36)
    route_date: date
    shipment_ids: list[str] = Field(min_length=1, max_length=200)


class SlotWindow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    starts_at: datetime
    ends_at: datetime
    capacity: int = Field(ge=0, le=100_000)


class SlotsCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    carrier: str = Field(min_length=1, max_length=50)
    region: str = Field(min_length=1, max_length=100)
    windows: list[SlotWindow] = Field(min_length=1, max_length=1000)


class DeliveryChangeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["slot", "pickup_point", "safe_place", "neighbour", "instructions"]
    detail: dict[str, Any]
    requested_by: Literal["customer", "assistant", "agent"] = "agent"


@router.post("/api/driver-rounds", status_code=201, tags=["shipments"])
def post_round(
    body: RoundCreate, ctx: CtxDep, principal: Annotated[Principal, Depends(require(scope=Scope.ADMIN))]
) -> Any:
    """Assigns stops to a driver for a day, in delivery order (admins only)."""
    ids = assign_stops(
        ctx, driver_id=body.driver_id, route_date=body.route_date, shipment_ids=body.shipment_ids
    )
    return {"driver_id": body.driver_id, "route_date": body.route_date.isoformat(), "assignment_ids": ids}


@router.post("/api/slots", status_code=201, tags=["shipments"])
def post_slots(
    body: SlotsCreate, ctx: CtxDep, principal: Annotated[Principal, Depends(require(scope=Scope.ADMIN))]
) -> Any:
    for i, w in enumerate(body.windows):
        if w.starts_at.tzinfo is None or w.ends_at.tzinfo is None:
            raise InvalidChange("times must carry a time zone", field=f"windows.{i}.starts_at")
    created = create_slots(
        ctx,
        carrier=body.carrier.lower(),
        region=body.region,
        windows=[(w.starts_at, w.ends_at, w.capacity) for w in body.windows],
    )
    return {"created": created, "updated": len(body.windows) - created}


@router.get("/api/shipments/{shipment_id}/slots", tags=["shipments"])
def get_slots(
    shipment_id: str,
    ctx: CtxDep,
    principal: Annotated[Principal, Depends(require(scope=Scope.READ_SHIPMENTS))],
) -> Any:
    now = ctx.clock.now()
    with ctx.read_engine.connect() as conn:
        shipment = load_shipment(conn, shipment_id)
        slots = list_slots(
            conn, carrier=shipment.carrier, region=shipment.region, now=now, until=now + timedelta(days=14)
        )
    return [
        {
            "id": s.id,
            "starts_at": s.starts_at.isoformat(),
            "ends_at": s.ends_at.isoformat(),
            "remaining": s.remaining,
        }
        for s in slots
    ]


@router.post("/api/shipments/{shipment_id}/delivery-changes", status_code=201, tags=["shipments"])
def post_delivery_change(
    shipment_id: str,
    body: DeliveryChangeCreate,
    ctx: CtxDep,
    principal: Annotated[Principal, Depends(require(scope=Scope.WRITE_SHIPMENTS, roles=(Role.AGENT,)))],
) -> Any:
    """A change made for the customer by an agent or the assistant; validated like the customer's own."""
    if principal.role == Role.DRIVER:
        from doorstep.errors import Forbidden

        raise Forbidden("drivers record proof of delivery, not delivery changes")
    return change_delivery(
        ctx, shipment_id=shipment_id, kind=body.kind, detail=body.detail, requested_by=body.requested_by
    )
