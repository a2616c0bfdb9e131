"""The invoice PDF issued after delivery with proof (reportlab); deterministic for the same inputs."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas


@dataclass(frozen=True)
class InvoiceLine:
    name: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class InvoiceData:
    number: str
    brand: str
    order_number: str
    issued_at: datetime
    delivered_at: datetime | None
    customer_name: str
    address_lines: tuple[str, ...]
    currency: str
    lines: tuple[InvoiceLine, ...]
    shipping: Decimal
    tax: Decimal
    discount: Decimal
    total: Decimal


def invoice_number(order_external_id: str) -> str:
    """One invoice per order, so the order number makes the invoice number unique and replayable."""
    return f"INV-{order_external_id}"


def render_invoice_pdf(data: InvoiceData) -> bytes:
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4, invariant=True)  # invariant: same bytes for the same invoice
    pdf.setTitle(f"Invoice {data.number}")
    width, height = A4
    y = height - 25 * mm
    pdf.setFillColor(colors.HexColor("#0b5cad"))
    pdf.setFont("Helvetica-Bold", 18)
    pdf.drawString(20 * mm, y, data.brand)
    pdf.setFillColor(colors.black)
    pdf.setFont("Helvetica-Bold", 14)
    pdf.drawRightString(width - 20 * mm, y, f"Invoice {data.number}")
    y -= 10 * mm
    pdf.setFont("Helvetica", 10)
    pdf.drawRightString(width - 20 * mm, y, f"Order {data.order_number}")
    pdf.drawRightString(width - 20 * mm, y - 5 * mm, f"Issued {data.issued_at:%Y-%m-%d}")
    if data.delivered_at:
        pdf.drawRightString(width - 20 * mm, y - 10 * mm, f"Delivered {data.delivered_at:%Y-%m-%d %H:%M} UTC")
    pdf.drawString(20 * mm, y, data.customer_name)
    for i, address_line in enumerate(data.address_lines):
        pdf.drawString(20 * mm, y - (i + 1) * 5 * mm, address_line)
    y -= 30 * mm
    pdf.setFont("Helvetica-Bold", 10)
    pdf.drawString(20 * mm, y, "Item")
    pdf.drawRightString(130 * mm, y, "Qty")
    pdf.drawRightString(160 * mm, y, "Unit price")
    pdf.drawRightString(width - 20 * mm, y, "Amount")
    pdf.line(20 * mm, y - 2 * mm, width - 20 * mm, y - 2 * mm)
    pdf.setFont("Helvetica", 10)
    for line in data.lines:
        y -= 7 * mm
        pdf.drawString(20 * mm, y, line.name[:60])
        pdf.drawRightString(130 * mm, y, str(line.quantity))
        pdf.drawRightString(160 * mm, y, _money(line.unit_price, data.currency))
        pdf.drawRightString(width - 20 * mm, y, _money(line.unit_price * line.quantity, data.currency))
    y -= 10 * mm
    for label, amount in (("Shipping", data.shipping), ("Discount", -data.discount), ("Tax", data.tax)):
        if amount:
            pdf.drawRightString(160 * mm, y, label)
            pdf.drawRightString(width - 20 * mm, y, _money(amount, data.currency))
            y -= 6 * mm
    pdf.setFont("Helvetica-Bold", 12)
    pdf.drawRightString(160 * mm, y, "Total")
    pdf.drawRightString(width - 20 * mm, y, _money(data.total, data.currency))
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def _money(amount: Decimal, currency: str) -> str:
    return f"{amount:,.2f} {currency}"
