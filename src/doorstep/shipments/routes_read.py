"""Shipments read API for staff tools and integrations (scope shipments:read)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from doorstep.context import CtxDep
from doorstep.security.deps import require
from doorstep.security.model import Role, Scope
from doorstep.shipments.errors import InvalidTrackingPayload, ShipmentNotFound
from doorstep.shipments.queries import find_shipments, shipment_view
from doorstep.shipments.repository import ShipmentRepository
from doorstep.shipments.schemas import ShipmentPage, ShipmentRead

router = APIRouter(tags=["shipments"])
Reader = Annotated[Any, Depends(require(scope=Scope.READ_SHIPMENTS, roles=(Role.AGENT, Role.ANALYST)))]


@router.get(
    "/api/v1/shipments", response_model=ShipmentPage, summary="Find shipments by tracking number or order"
)
def list_shipments(
    ctx: CtxDep,
    principal: Reader,
    tracking_number: Annotated[str | None, Query(max_length=100)] = None,
    order_id: Annotated[str | None, Query(max_length=36)] = None,
) -> ShipmentPage:
    if not tracking_number and not order_id:
        raise InvalidTrackingPayload("give tracking_number or order_id", status=400)
    with ctx.read_engine.connect() as conn:
        return ShipmentPage(items=find_shipments(conn, tracking_number=tracking_number, order_id=order_id))


@router.get(
    "/api/v1/shipments/{shipment_id}", response_model=ShipmentRead, summary="A shipment with its timeline"
)
def get_shipment(shipment_id: str, ctx: CtxDep, principal: Reader) -> ShipmentRead:
    with ctx.read_engine.connect() as conn:
        found = ShipmentRepository(conn).get(shipment_id)
    if found is None:
        raise ShipmentNotFound(f"no shipment with id {shipment_id}")
    return shipment_view(found)
