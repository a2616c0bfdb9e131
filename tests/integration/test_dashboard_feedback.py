"""Feedback through HTTP and the CLI: the signed survey page, the review CSV import, FeedbackReceived."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from tests.conftest import make_settings
from tests.factories import secret_key
from tests.helpers import running_app
from tests.support_dashboard import NOW, known_world
from typer.testing import CliRunner

from doorstep.bus.registry import Bus
from doorstep.clock import FixedClock
from doorstep.db.engine import create_db_engine
from doorstep.db.uow import UnitOfWork
from doorstep.feedback.api import survey_url
from doorstep.feedback.events import FeedbackReceived
from doorstep.feedback.handlers import record_survey
from doorstep.feedback.model import SurveyAnswer
from doorstep.feedback.tables import feedback
from doorstep.orders.tables import orders


def _rows(engine, **where):  # type: ignore[no-untyped-def]
    q = select(feedback)
    for k, v in where.items():
        q = q.where(feedback.c[k] == v)
    with engine.connect() as conn:
        return conn.execute(q.order_by(feedback.c.external_id)).all()


def test_survey_link_page_and_answer(tmp_path: Path, sqlite_url: str) -> None:
    engine = create_db_engine(sqlite_url)
    ids = known_world(engine)
    engine.dispose()
    settings = make_settings(tmp_path, sqlite_url)
    with running_app(settings, FixedClock(NOW)) as app:
        path = survey_url(settings, ids["o3"]).removeprefix(settings.public_base_url)
        page = app.client.get(path)
        assert page.status_code == 200 and 'name="csat"' in page.text and "<legend>" in page.text

        missing = app.client.post(path, data={"nps": "9"})
        assert missing.status_code == 422 and "satisfaction" in missing.text
        assert _rows(app.ctx.engine, order_id=ids["o3"]) == []

        done = app.client.post(path, data={"csat": "4", "nps": "9", "comment": "late but handled well"})
        assert done.status_code == 200 and "Thank you" in done.text
        again = app.client.post(path, data={"csat": "5", "nps": "10", "comment": "the agent was lovely"})
        assert again.status_code == 200
        rows = _rows(app.ctx.engine, order_id=ids["o3"])
        assert len(rows) == 1  # one answer per order: answering again replaces it
        assert (rows[0].csat, rows[0].nps, rows[0].topic, rows[0].source) == (5, 10, "service", "survey_page")

        assert app.client.get(path[:-3] + "xyz").status_code == 403  # tampered link


def test_recording_a_survey_publishes_feedback_received(sqlite_url: str) -> None:
    engine = create_db_engine(sqlite_url)
    ids = known_world(engine)
    uow = UnitOfWork(engine, bus=Bus(), clock=FixedClock(NOW))
    feedback_id = record_survey(SurveyAnswer(ids["o3"], 2, 3, "parcel arrived late"), uow=uow, now=NOW)
    assert uow.published == [
        FeedbackReceived(
            occurred_at=NOW,
            event_id=uow.published[0].event_id,
            feedback_id=feedback_id,
            customer_id=ids["C"],
            order_id=ids["o3"],
            kind="survey",
            score=2,
            topic="delivery",
        )
    ]
    engine.dispose()


def _csv(engine) -> str:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        numbers = conn.execute(select(orders.c.external_id).order_by(orders.c.placed_at)).scalars().all()
    return (
        "order_id,rating,comment,submitted_at,external_id\n"
        f"{numbers[1]},5,great value for money,2026-11-20T10:00:00Z,tp-1\n"
        f"{numbers[2]},1,the driver threw it over the fence,2026-11-21T10:00:00Z,tp-2\n"
        "#nope,3,,2026-11-21T10:00:00Z,tp-3\n"
        f"{numbers[3]},0,,2026-11-21T10:00:00Z,tp-4\n"
    )


def test_review_csv_api_stores_good_rows_and_reports_bad_lines(tmp_path: Path, sqlite_url: str) -> None:
    engine = create_db_engine(sqlite_url)
    known_world(engine)
    body = _csv(engine)
    engine.dispose()
    with running_app(make_settings(tmp_path, sqlite_url), FixedClock(NOW)) as app:
        assert app.client.post("/api/v1/reviews.csv", content=body).status_code == 401
        reader = secret_key(app.ctx.engine, now=NOW, scopes=["analytics:read"])
        assert (
            app.client.post(
                "/api/v1/reviews.csv", content=body, headers={"Authorization": f"Bearer {reader}"}
            ).status_code
            == 403
        )
        assert _rows(app.ctx.engine, kind="review", source="csv") == []

        key = secret_key(app.ctx.engine, now=NOW, scopes=["orders:write"])
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "text/csv"}
        first = app.client.post("/api/v1/reviews.csv", content=body, headers=headers)
        assert first.status_code == 200
        assert first.json() == {
            "stored": 2,
            "duplicates": 0,
            "errors": [
                {"line": 4, "message": "order_id '#nope' is not a known order"},
                {"line": 5, "message": "rating 0 is outside 1 to 5"},
            ],
        }
        rows = _rows(app.ctx.engine, source="csv")
        assert [(r.external_id, r.rating, r.topic) for r in rows] == [
            ("tp-1", 5, "price"),
            ("tp-2", 1, "delivery"),
        ]
        second = app.client.post("/api/v1/reviews.csv", content=body, headers=headers)
        assert second.json()["stored"] == 0 and second.json()["duplicates"] == 2


def test_review_import_cli(tmp_path: Path, sqlite_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from doorstep.cli import app as cli_app
    from doorstep.settings import get_settings

    engine = create_db_engine(sqlite_url)
    known_world(engine)
    file = tmp_path / "reviews.csv"
    file.write_text(_csv(engine))
    monkeypatch.setenv("DOORSTEP_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("DOORSTEP_ENV", "test")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli_app, ["feedback", "import-reviews", str(file)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1  # bad rows present
    assert "2 stored" in result.output and "not a known order" in result.output
    assert len(_rows(engine, source="csv")) == 2
    engine.dispose()


def test_the_follow_up_messages_survey_link_opens_the_survey(tmp_path: Path, sqlite_url: str) -> None:
    from doorstep.notifications.templates import links

    engine = create_db_engine(sqlite_url)
    ids = known_world(engine)
    engine.dispose()
    settings = make_settings(tmp_path, sqlite_url)
    link = links(settings, order_id=ids["o1"], customer_id=ids["A"], channel="email", topic="service")[
        "survey_url"
    ]
    assert link == survey_url(settings, ids["o1"])
    with running_app(settings, FixedClock(NOW)) as app:
        page = app.client.get(link.removeprefix(settings.public_base_url))
        assert page.status_code == 200 and "How did we do with order" in page.text
