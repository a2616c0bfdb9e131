"""Feedback edges: the public post-delivery survey (signed link) and the review CSV import API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from doorstep.context import CtxDep
from doorstep.feedback.api import SURVEY_PURPOSE
from doorstep.feedback.errors import ErrorCode, FeedbackError, InvalidAnswer
from doorstep.feedback.handlers import import_reviews, record_survey
from doorstep.feedback.model import SurveyAnswer
from doorstep.security.deps import require
from doorstep.security.links import verify
from doorstep.security.model import Principal, Role, Scope
from doorstep.web.templating import render

router = APIRouter(tags=["feedback"])
MAX_CSV_BYTES = 10 * 1024 * 1024

ReviewImporter = Annotated[Principal, Depends(require(scope=Scope.WRITE_ORDERS, roles=(Role.ANALYST,)))]


def _order_for(ctx: Any, token: str) -> Any:
    order_id = verify(ctx.settings.secret_key, SURVEY_PURPOSE, token)
    with ctx.uow() as uow:
        order = uow.feedback.order(order_id)
    if order is None:
        raise FeedbackError("this survey is no longer available", code=ErrorCode.NOT_FOUND)
    return order


@router.get("/s/{token}", response_class=HTMLResponse, include_in_schema=False)
def survey_page(request: Request, ctx: CtxDep, token: str) -> Response:
    order = _order_for(ctx, token)
    return render(request, "survey.html", order=order, token=token, error=None, values={})


@router.post("/s/{token}", response_class=HTMLResponse, include_in_schema=False)
def survey_submit(
    request: Request,
    ctx: CtxDep,
    token: str,
    csat: Annotated[str | None, Form()] = None,
    nps: Annotated[str | None, Form()] = None,
    comment: Annotated[str | None, Form()] = None,
) -> Response:
    order = _order_for(ctx, token)
    try:
        answer = SurveyAnswer.parse(order_id=order.id, csat=csat, nps=nps, comment=comment)
    except InvalidAnswer as exc:
        return render(
            request,
            "survey.html",
            status_code=422,
            order=order,
            token=token,
            error=exc.detail,
            values={"csat": csat, "nps": nps, "comment": comment},
        )
    record_survey(answer, uow=ctx.uow(), now=ctx.clock.now())
    return render(request, "survey_thanks.html", order=order)


@router.post("/api/v1/reviews.csv")
async def import_reviews_csv(request: Request, ctx: CtxDep, principal: ReviewImporter) -> Response:
    """Import reviews from CSV (columns order_id, rating, comment, submitted_at, external_id): good rows are
    stored, bad rows reported by line. Send the file as the request body (text/csv)."""
    body = await request.body()
    if len(body) > MAX_CSV_BYTES:
        raise FeedbackError(
            f"the file is {len(body)} bytes; the limit is {MAX_CSV_BYTES}: split it", code=ErrorCode.TOO_LARGE
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FeedbackError("the CSV must be UTF-8 encoded") from None
    report = await run_in_threadpool(import_reviews, text, uow=ctx.uow(), now=ctx.clock.now())
    return JSONResponse(report.as_dict(), status_code=200)
