"""One settings object for the whole service, read from DOORSTEP_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_SECRET = "dev-insecure-secret-change-me"  # refused outside development, see _refuse_unsafe_defaults
DEV_WRITE_KEY = "wk_dev_doorstep"  # printed by `make run`; only ingests
DEV_ADMIN_EMAIL = "admin@doorstep.local"
DEV_ADMIN_PASSWORD = "doorstep-admin"
# Development + demo only (see _demo_webhook_secrets): the secret the demo simulator signs its webhooks with.
DEV_DEMO_WEBHOOK_SECRET = "dev-demo-webhook-secret-not-for-production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOORSTEP_", env_file=".env", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    public_base_url: str = ""  # e.g. https://track.example.com; defaults to http://host:port
    var_dir: Path = Path("var")
    database_url: str = ""  # defaults to sqlite under var_dir
    broker_url: str = ""  # "" = database outbox only; nats://127.0.0.1:4222 = NATS JetStream
    secret_key: str = DEV_SECRET
    log_level: str = "INFO"
    log_json: bool = True

    # pipeline
    in_process_worker: bool = True
    # while ingest requests keep arriving, the in-process worker uses at most this share of the API process's
    # time (one GIL); 1.0 = no limit. Separate `doorstep worker` processes are not limited.
    in_process_worker_share: float = Field(default=0.3, gt=0, le=1)
    # `doorstep serve` runs the outbox worker and the notification sender in a child process of their own
    # instead of threads of the API process: the pipeline gets its own interpreter lock (a second core).
    pipeline_process: bool = False
    worker_batch_size: int = 100
    # idle, the worker looks for work this often (a read, no write lock) unless a commit of its own process wakes
    # it: commits of other processes (`doorstep serve --no-worker` beside `doorstep worker`) wake nothing
    worker_poll_interval_s: float = 0.02
    worker_lease_s: float = 30.0
    max_attempts: int = 8  # then dead-lettered
    retry_base_s: float = 1.0
    retry_max_s: float = 600.0
    partitions: int = 16  # outbox partitions; per-key order holds inside one
    # more modules whose `register(bus)` runs after the domains' (comma-separated; tests inject handlers)
    extra_handler_modules: Annotated[list[str], NoDecode] = Field(default_factory=list)
    nats_stream: str = "DOORSTEP"  # JetStream stream; subjects are `<stream lowercased>.events.<partition>`

    # ingest
    max_future_skew_s: float = 24 * 3600  # a corrected timestamp further ahead than this is rejected
    default_phone_region: str = ""  # ISO 3166 alpha-2 (e.g. GB): reads phone numbers sent without +country
    default_currency: str = "USD"  # orders whose events carry no currency (Segment's own default)

    # demo
    demo: bool = False  # `make run` turns the live simulator on
    demo_profile: str = "boutique"

    # providers (tests point these at local servers)
    aftership_webhook_secret: str = ""
    karrio_webhook_secret: str = ""
    tracking_webhook_secret: str = ""  # generic JSON tracking endpoint
    carrier_codes_dir: str = ""  # extra carrier code tables (*.yaml) beside the packaged ones
    shipment_check_interval_s: float = 300.0  # stalled / probably-lost checks; 0 turns the loop off
    carrier_webhook_url: str = ""  # outbound delivery changes
    carrier_webhook_secret: str = ""
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    email_from: str = "Doorstep <no-reply@doorstep.local>"
    twilio_base_url: str = "https://api.twilio.com"
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_from_number: str = ""
    twilio_whatsapp_from: str = ""
    twilio_messaging_service_sid: str = ""
    whatsapp_base_url: str = "https://graph.facebook.com/v21.0"
    whatsapp_phone_number_id: str = ""
    whatsapp_access_token: str = ""
    meta_app_secret: str = ""
    meta_verify_token: str = ""
    messenger_base_url: str = "https://graph.facebook.com/v21.0"
    messenger_page_access_token: str = ""
    inbound_email_secret: str = (
        ""  # inbound-parse webhooks send it as Bearer token, Basic password or ?secret=
    )

    brand_name: str = "Doorstep Demo Shop"
    # the shop's order number formats for the assistant, as regexes (a group named `number` is the value);
    # empty: '#?[A-Z]{0,3}-?\\d{4,10}'. From the environment as JSON: DOORSTEP_ASSISTANT_ORDER_PATTERNS='["..."]'
    assistant_order_patterns: list[str] = Field(default_factory=list)
    outbound_timeout_s: float = 10.0

    # seeded on first start in development only
    dev_write_key: str = DEV_WRITE_KEY
    dev_admin_email: str = DEV_ADMIN_EMAIL
    dev_admin_password: str = DEV_ADMIN_PASSWORD

    extra: dict[str, str] = Field(default_factory=dict)

    @field_validator("extra_handler_modules", mode="before")
    @classmethod
    def _split_modules(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.var_dir / 'doorstep.db').as_posix()}"
        if not self.public_base_url:
            self.public_base_url = f"http://{self.host}:{self.port}"
        return self

    @model_validator(mode="after")
    def _demo_webhook_secrets(self) -> Settings:
        """Development with the demo on only: unset provider webhook secrets take DEV_DEMO_WEBHOOK_SECRET, so
        the demo simulator's signed webhooks are accepted by this same server. Never applied in test or
        production, and never when a secret is set."""
        if self.env == "development" and self.demo:
            for name in ("aftership_webhook_secret", "twilio_auth_token", "inbound_email_secret"):
                if hasattr(self, name) and not getattr(self, name):
                    setattr(self, name, DEV_DEMO_WEBHOOK_SECRET)
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
        if self.env == "production" and (self.secret_key == DEV_SECRET or len(self.secret_key) < 32):
            raise ValueError(
                "DOORSTEP_SECRET_KEY must be set to a random value of 32+ characters in production "
                "(for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def is_development(self) -> bool:
        return self.env == "development"


@lru_cache
def get_settings() -> Settings:
    return Settings()
