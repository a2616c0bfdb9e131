"""The printable return label: A6-ish PDF with addresses, the tracking number and a QR code the drop-off
point scans (reportlab + qrcode)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import qrcode
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas

LABEL_SIZE = (105 * mm, 148 * mm)  # A6: fits the common thermal label printers


@dataclass(frozen=True)
class LabelData:
    return_id: str
    tracking_number: str
    carrier: str
    order_number: str
    from_lines: tuple[str, ...]
    to_lines: tuple[str, ...]
    method: str


def qr_payload(data: LabelData) -> str:
    return f"DOORSTEP-RETURN:{data.tracking_number}:{data.return_id}"


def render_label_pdf(data: LabelData) -> bytes:
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=6, border=2)
    qr.add_data(qr_payload(data))
    qr.make(fit=True)
    image = qr.make_image(fill_color="black", back_color="white").get_image()
    buffer = io.BytesIO()
    width, height = LABEL_SIZE
    pdf = canvas.Canvas(buffer, pagesize=LABEL_SIZE, invariant=True)
    pdf.setTitle(f"Return label {data.tracking_number}")
    y = height - 12 * mm
    pdf.setFont("Helvetica-Bold", 14)
    pdf.drawString(8 * mm, y, f"RETURN · {data.carrier.upper()}")
    pdf.setFont("Helvetica", 8)
    pdf.drawString(8 * mm, y - 5 * mm, f"Order {data.order_number} · {data.method.replace('_', ' ')}")
    y -= 14 * mm
    pdf.setFont("Helvetica-Bold", 8)
    pdf.drawString(8 * mm, y, "FROM")
    pdf.setFont("Helvetica", 9)
    for i, line in enumerate(data.from_lines):
        pdf.drawString(8 * mm, y - (i + 1) * 4 * mm, line[:48])
    y -= 24 * mm
    pdf.setFont("Helvetica-Bold", 8)
    pdf.drawString(8 * mm, y, "TO")
    pdf.setFont("Helvetica-Bold", 11)
    for i, line in enumerate(data.to_lines):
        pdf.drawString(8 * mm, y - (i + 1) * 5 * mm, line[:40])
    qr_size = 45 * mm
    pdf.drawImage(ImageReader(image), (width - qr_size) / 2, 22 * mm, qr_size, qr_size)
    pdf.setFont("Courier-Bold", 12)
    pdf.drawCentredString(width / 2, 14 * mm, data.tracking_number)
    pdf.setFont("Helvetica", 7)
    pdf.drawCentredString(
        width / 2, 8 * mm, "Show this code at the drop-off point, or stick it on the parcel."
    )
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()
