"""Generated files load through Doorstep's own endpoints without a single rejection.

Segment batches go through the real /v1/batch now. The provider webhooks (AfterShip, Twilio, inbound email)
go through their real endpoints when this build has them; otherwise those tests skip, naming the endpoint.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import orjson
import pytest
from sqlalchemy import func, select
from tests.conftest import make_settings
from tests.factories import write_key
from tests.helpers import AppUnderTest, running_app

from doorstep.clock import FixedClock
from doorstep.ingest.tables import event_log
from doorstep.security.signatures import hmac_sha256_b64, twilio_signature
from doorstep.simulator.files import write_files
from doorstep.simulator.profile import load_profile
from doorstep.simulator.world import make_plan

SECRET = "simulator-test-webhook-secret"
BASE = "http://testserver"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    write_files(make_plan(load_profile("boutique"), orders=150, seed=21), out, processes=1)
    return out


def _lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


def _latest(files: Path) -> datetime:
    stamps = [e["timestamp"] for b in _lines(files / "segment_batches.jsonl") for e in b["batch"]]
    return datetime.fromisoformat(max(stamps).replace("Z", "+00:00"))


def _app(tmp_path: Path, url: str, clock: FixedClock):  # type: ignore[no-untyped-def]
    return running_app(
        make_settings(
            tmp_path,
            url,
            public_base_url=BASE,
            aftership_webhook_secret=SECRET,
            twilio_auth_token=SECRET,
            inbound_email_secret=SECRET,
        ),
        clock,
    )


def _has_route(app: AppUnderTest, path: str) -> bool:
    """Whether this build serves `path` (an unsigned empty POST is refused, but not with 404)."""
    return app.client.post(path, content=b"").status_code not in (404, 405)


def test_every_segment_batch_is_accepted(tmp_path: Path, database_url: str, files: Path) -> None:
    clock = FixedClock(_latest(files))
    batches = _lines(files / "segment_batches.jsonl")
    with _app(tmp_path, database_url, clock) as app:
        key = write_key(app.ctx.engine, now=clock.now())
        auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
        answers = [
            app.client.post(
                "/v1/batch", content=orjson.dumps(b), headers={**auth, "content-type": "application/json"}
            )
            for b in batches
        ]

        assert [a.status_code for a in answers] == [200] * len(batches)
        assert [a.json() for a in answers] == [
            {"success": True, "accepted": len(b["batch"]), "duplicates": 0} for b in batches
        ]
        with app.ctx.engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(event_log)).scalar_one()
        assert stored == sum(len(b["batch"]) for b in batches)


def test_every_aftership_webhook_is_accepted(tmp_path: Path, sqlite_url: str, files: Path) -> None:
    clock = FixedClock()
    bodies = _lines(files / "aftership_webhooks.jsonl")
    with _app(tmp_path, sqlite_url, clock) as app:
        if not _has_route(app, "/webhooks/aftership"):
            pytest.skip("this build has no /webhooks/aftership yet (tracking helper)")
        statuses = []
        for body in bodies:
            clock.at = datetime.fromtimestamp(body["ts"], tz=UTC)  # each webhook arrives when it is sent
            raw = orjson.dumps(body)
            answer = app.client.post(
                "/webhooks/aftership",
                content=raw,
                headers={
                    "content-type": "application/json",
                    "aftership-hmac-sha256": hmac_sha256_b64(SECRET, raw),
                },
            )
            statuses.append((answer.status_code, answer.text[:200]))

        assert [s for s in statuses if s[0] >= 300] == []
        assert len(statuses) == len(bodies) > 100


def test_every_twilio_message_is_accepted(tmp_path: Path, sqlite_url: str, files: Path) -> None:
    clock = FixedClock()
    forms = _lines(files / "twilio_inbound.jsonl")
    with _app(tmp_path, sqlite_url, clock) as app:
        if not _has_route(app, "/webhooks/twilio"):
            pytest.skip("this build has no /webhooks/twilio yet (notify helper)")
        statuses = []
        for form in forms:
            signature = twilio_signature(SECRET, BASE + "/webhooks/twilio", form.items())
            answer = app.client.post(
                "/webhooks/twilio",
                content=urlencode(form),
                headers={
                    "content-type": "application/x-www-form-urlencoded",
                    "x-twilio-signature": signature,
                },
            )
            statuses.append((answer.status_code, answer.text[:200]))

        assert [s for s in statuses if s[0] >= 300] == []
        assert len(statuses) == len(forms) > 0


def test_every_inbound_email_is_accepted(tmp_path: Path, sqlite_url: str, files: Path) -> None:
    clock = FixedClock()
    emails = _lines(files / "email_inbound.jsonl")
    with _app(tmp_path, sqlite_url, clock) as app:
        if not _has_route(app, "/webhooks/email"):
            pytest.skip("this build has no /webhooks/email yet (notify helper)")
        statuses = [
            app.client.post(
                "/webhooks/email",
                content=orjson.dumps(e),
                headers={"content-type": "application/json", "authorization": f"Bearer {SECRET}"},
            ).status_code
            for e in emails
        ]

        assert [s for s in statuses if s >= 300] == []
        assert len(statuses) == len(emails) > 0


@pytest.mark.slow
def test_reviews_and_surveys_load_once_the_orders_exist(tmp_path: Path, sqlite_url: str, files: Path) -> None:
    from urllib.parse import urlencode as form_encode

    from sqlalchemy import select as sql_select
    from tests.factories import secret_key

    from doorstep.feedback.tables import feedback
    from doorstep.orders.model import order_id_for
    from doorstep.security.links import sign

    surveys = _lines(files / "surveys.jsonl")
    reviews_csv = (files / "reviews.csv").read_bytes()
    latest = max(
        [_latest(files)] + [datetime.fromisoformat(s["submitted_at"].replace("Z", "+00:00")) for s in surveys]
    )
    clock = FixedClock(latest)
    with _app(tmp_path, sqlite_url, clock) as app:
        if not _has_route(app, "/api/v1/reviews.csv"):
            pytest.skip("this build has no review import yet (dashboard helper)")
        key = write_key(app.ctx.engine, now=clock.now())
        auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
        for batch in _lines(files / "segment_batches.jsonl"):
            assert app.client.post("/v1/batch", json=batch, headers=auth).status_code == 200
        app.drain()  # the orders exist once the worker has projected the shop's events
        api_key = secret_key(app.ctx.engine, now=clock.now(), scopes=["orders:write"])

        report = app.client.post(
            "/api/v1/reviews.csv",
            content=reviews_csv,
            headers={"content-type": "text/csv", "authorization": f"Bearer {api_key}"},
        )
        answers = []
        for survey in surveys:
            token = sign(app.ctx.settings.secret_key, "survey", order_id_for(survey["order_id"]))
            answers.append(
                app.client.post(
                    f"/s/{token}",
                    content=form_encode(
                        {"csat": survey["csat"], "nps": survey["nps"], "comment": survey["comment"]}
                    ),
                    headers={"content-type": "application/x-www-form-urlencoded"},
                ).status_code
            )

        review_rows = reviews_csv.decode().count("\n") - 1
        assert report.status_code == 200, report.text
        assert report.json() == {"stored": review_rows, "duplicates": 0, "errors": []}
        assert answers == [200] * len(surveys)
        with app.ctx.engine.connect() as conn:
            kinds = [row.kind for row in conn.execute(sql_select(feedback.c.kind))]
        assert kinds.count("review") == review_rows > 0
        assert kinds.count("survey") == len(surveys) > 0
