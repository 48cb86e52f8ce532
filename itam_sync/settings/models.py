"""The settings models: what a config file may say, validated by pydantic.

Problems are reported with the file, line and key that caused them and a hint on how to fix them.
Secrets stay references (`${env:NAME}`, `${file:/path}`) in the settings; `resolve_secrets` turns them into
values only when a connector is built, so they never reach the database, the merge log or the logs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from itam_sync.model.canonical import EntityType
from itam_sync.model.keys import check_ambiguous_values
from itam_sync.settings.bundled import bundled_mapping
from itam_sync.settings.http import HttpConfig
from itam_sync.settings.lifecycle import LifecycleConfig, ReportsConfig
from itam_sync.settings.schedules import check_schedule_text

SECRET_REF = re.compile(r"\$\{(env|file):([^}]+)\}")
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DATABASE_URL_ENV = "ITAM_SYNC_DATABASE_URL"  # overrides store.url when set


def parse_duration(text: str) -> float:
    """'30d' -> seconds. Units: s, m, h, d, w."""
    m = DURATION.match(text)
    if not m:
        raise ValueError(f"bad duration {text!r}: use a number and a unit, e.g. 12h, 30d, 2w")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreConfig(_Model):
    """Where golden records, staged source records and the merge log live."""

    url: str = "sqlite:///itam.db"


class ConnectorConfig(_Model):
    """A named instance of a connector type, with its own state, cursor and cleanup scope."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    type: str
    enabled: bool = True
    schedule: str | None = None  # cron ("*/30 * * * *") or an interval ("every 15m"); used by `serve`
    # A periodic full resync besides the incremental runs (e.g. "every 7d" or "0 3 * * 0"); used by `serve`.
    full_schedule: str | None = None
    mapping: str | None = None  # mapping file; default <mappings_dir>/<type>.yaml
    deletion_guard: float | None = Field(default=None, ge=0, le=1)
    # What the source is to the reports (coverage gaps): by default from the connector type, see
    # itam_sync/reports.py ROLE_BY_TYPE; csv/jsonl files need it unless their stream is procurement-like.
    role: Literal["mdm", "edr", "idp", "cloud", "hr", "procurement", "warranty", "other"] | None = None
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("schedule", "full_schedule")
    @classmethod
    def _check_schedule(cls, v: str | None) -> str | None:
        return check_schedule(v)


class IdentityConfig(_Model):
    """Match keys and junk filters for identity resolution."""

    asset_keys: list[str] = Field(
        default_factory=lambda: ["instance_id", "serial_number", "hardware_uuid", "entra_device_id", "udid", "imei",
                                 "mac_addresses"])
    person_keys: list[str] = Field(default_factory=lambda: ["employee_id", "email", "email_aliases"])
    subscription_keys: list[str] = Field(default_factory=lambda: ["sku_id", "product"])
    hostname_weak_key: bool = False  # join on hostname only when no strong key matched
    junk_serials: list[str] = Field(default_factory=list)  # added to the built-in list
    non_matching_macs: list[str] = Field(default_factory=list)  # MACs or OUI prefixes (dock, adapter)
    ambiguous_values: list[str] = Field(default_factory=list)  # kind:value or kind:prefix* never matched on

    @field_validator("ambiguous_values")
    @classmethod
    def _check_ambiguous_values(cls, v: list[str]) -> list[str]:
        return check_ambiguous_values(v)


class FieldRuleConfig(_Model):
    """Per-field precedence: source order, freshness window and strategy."""

    order: list[str] | None = None
    freshness: str | None = None
    strategy: Literal["precedence", "latest", "union"] | None = None

    @field_validator("freshness")
    @classmethod
    def _check_freshness(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v


class EntityPrecedence(_Model):
    default: list[str] | None = None
    freshness: str | None = None
    fields: dict[str, FieldRuleConfig] = Field(default_factory=dict)

    @field_validator("freshness")
    @classmethod
    def _check_freshness(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v


class PrecedenceConfig(_Model):
    """Which source wins, per entity and field. `manual` overrides always sit above every source."""

    default: list[str] = Field(default_factory=list)
    asset: EntityPrecedence = Field(default_factory=EntityPrecedence)
    person: EntityPrecedence = Field(default_factory=EntityPrecedence)
    subscription: EntityPrecedence = Field(default_factory=EntityPrecedence)

    def for_entity(self, entity: EntityType) -> EntityPrecedence:
        return {EntityType.ASSET: self.asset, EntityType.PERSON: self.person,
                EntityType.SUBSCRIPTION: self.subscription}[entity]


class SyncConfig(_Model):
    deletion_guard: float = Field(default=0.10, ge=0, le=1)  # largest share a full run may mark missing
    # largest drop of a field's fill rate (share of records with a value) against the last successful full run
    # before a full run ends `degraded`: 0.20 = 20 percentage points (itam_sync/engine/contracts.py)
    fill_rate_drop: float = Field(default=0.20, ge=0, le=1)
    batch_size: int = Field(default=2000, ge=1, le=100_000)
    # Worker processes for per-record work (mapping, match keys, merge decisions); one writer keeps identity,
    # the store and the chain, so the result is the same with 1 or N. None: one per core; 1: no processes.
    workers: int | None = Field(default=None, ge=1, le=64)
    # A run starts the workers once this many records needed mapping (a small run never starts them); work
    # goes to them from when they run, even in small runs after a big one.
    parallel_min: int = Field(default=5000, ge=1)


class WebConfig(_Model):
    """The read-only web UI and REST API (`itam-sync web`).

    `api_tokens` are secret references (`${env:X}` / `${file:P}`), resolved when the server starts; with no
    token configured (here or in ITAM_SYNC_WEB_TOKENS) the server only binds to the loopback interface.
    """

    api_tokens: list[str] = Field(default_factory=list)
    page_size: int = Field(default=50, ge=5, le=500)

    @field_validator("api_tokens")
    @classmethod
    def _check_tokens(cls, v: list[str]) -> list[str]:
        for t in v:
            # A literal token in a config file under version control is a leak: only references are accepted.
            if not SECRET_REF.fullmatch(t.strip()):
                raise ValueError("api_tokens entries must be secret references such as ${env:ITAM_WEB_TOKEN} "
                                 "or ${file:/run/secrets/itam_web_token}, not literal tokens")
        return v


# -- publishing: sinks and reminders (issue 8) ------------------------------------------------------------

def check_schedule(v: str | None) -> str | None:
    """A schedule is a 5-field cron expression (each field in range, as `serve` reads it) or 'every <duration>'."""
    return None if v is None else check_schedule_text(v)


def _require_ref(v: str | None, what: str) -> str | None:
    # A literal password or webhook URL in a config file under version control is a leak.
    if v is not None and not SECRET_REF.fullmatch(v.strip()):
        raise ValueError(f"{what} must be a secret reference such as ${{env:NAME}} or ${{file:/run/secrets/name}}, "
                         "not a literal value")
    return v


class SinkConfig(_Model):
    """A named instance of a sink type (the outbound side): ServiceNow, Snipe-IT, a webhook, or a plugin.

    `settings` are the sink type's own settings (checked by `itam-sync validate`); secrets in them are
    references resolved only when the sink is built.
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    type: str
    enabled: bool = True
    schedule: str | None = None  # cron or "every 1h"; kept for `serve` (run `itam-sync push` from cron meanwhile)
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, v: str | None) -> str | None:
        return check_schedule(v)


class SmtpConfig(_Model):
    """Where reminder digests are e-mailed."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    host: str
    port: int = Field(default=587, ge=1, le=65535)
    from_: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    username: str | None = None
    password: str | None = None  # a secret reference
    starttls: bool = True
    ssl: bool = False  # SMTP over TLS from the first byte (port 465) instead of STARTTLS
    ca_file: str | None = None  # a private CA bundle to trust for TLS
    timeout: float = Field(default=30.0, gt=0)

    @field_validator("password")
    @classmethod
    def _check_password(cls, v: str | None) -> str | None:
        return _require_ref(v, "smtp.password")


class DeliveryConfig(_Model):
    """How a digest is delivered: e-mail (SMTP), a Slack-compatible incoming webhook, or both."""

    smtp: SmtpConfig | None = None
    slack_webhook: str | None = None  # a secret reference to the webhook URL

    @field_validator("slack_webhook")
    @classmethod
    def _check_webhook(cls, v: str | None) -> str | None:
        return _require_ref(v, "slack_webhook")


REMINDER_RULE_TYPES = ("warranty_ending", "subscription_renewal", "terminated_not_recovered", "device_unseen",
                       "coverage_gap", "os_end_of_support", "fully_depreciated", "account_not_offboarded")


class ReminderRuleConfig(_Model):
    """One reminder rule; which keys apply depends on `type` (see the README)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    type: Literal["warranty_ending", "subscription_renewal", "terminated_not_recovered", "device_unseen",
                  "coverage_gap", "os_end_of_support", "fully_depreciated", "account_not_offboarded"]
    days: int | None = Field(default=None, ge=0, le=3650)
    windows: list[int] = Field(default_factory=lambda: [90, 60, 30])
    repeat: str | None = None  # remind again every <duration> while the item stays true
    catch_up: str = "30d"  # a date that passed while nothing ran is still reported if it is this recent
    kinds: list[str] | None = None  # asset kinds the rule looks at (default: all)
    gaps: list[Literal["mdm-without-edr", "edr-not-managed", "idp-or-cloud-not-in-inventory",
                       "procured-never-seen"]] | None = None  # coverage_gap: which gaps (default: all)

    @field_validator("repeat", "catch_up")
    @classmethod
    def _check_durations(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v

    @field_validator("windows")
    @classmethod
    def _check_windows(cls, v: list[int]) -> list[int]:
        if not v or any(w <= 0 for w in v):
            raise ValueError("windows must be a non-empty list of positive day counts, e.g. [90, 60, 30]")
        return sorted(set(v), reverse=True)


class RemindersConfig(_Model):
    """Reminder rules and where their digest goes."""

    schedule: str | None = None  # kept for `serve` (run `itam-sync remind` from cron meanwhile)
    subject: str = "itam-sync reminders"
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    rules: list[ReminderRuleConfig] = Field(default_factory=list)

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, v: str | None) -> str | None:
        return check_schedule(v)


# -- operations: `serve` (issue 9) -------------------------------------------------------------------------

class WebhookConfig(_Model):
    """How one connector instance's vendor events reach `serve` (POST /hooks/<connector name>).

    `secret` is a secret reference: the value Okta sends in its auth header, the Jamf header value or basic-auth
    password, or the Graph subscription's `clientState`.
    """

    kind: Literal["okta", "jamf", "graph"] | None = None  # default: from the connector type
    secret: str
    header: str | None = None  # okta: default Authorization; jamf: the header for header auth
    username: str | None = None  # jamf basic auth: the user (then `secret` is its password)

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, v: str) -> str:
        return _require_ref(v, "webhook secret") or v


class ServiceConfig(_Model):
    """`itam-sync serve`: where it listens, how many runs at once, leases, shutdown, API tokens, webhooks."""

    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    max_parallel: int = Field(default=4, ge=1, le=64)  # runs of different connectors at once
    grace_period_s: float = Field(default=60.0, ge=0)  # on SIGTERM, how long a running sync may finish
    lease_ttl_s: float = Field(default=60.0, ge=1)  # a dead worker's connector lease frees after this
    jitter_s: float = Field(default=30.0, ge=0)  # scheduled runs start up to this late (max 10% of an interval)
    debounce_s: float = Field(default=10.0, ge=0)  # a burst of vendor events within this makes one run
    timezone: str | None = None  # for cron schedules; default the host's time zone
    api_tokens: list[str] = Field(default_factory=list)  # secret references; POST /runs needs one of them
    webhooks: dict[str, WebhookConfig] = Field(default_factory=dict)  # connector name -> how it authenticates

    @field_validator("api_tokens")
    @classmethod
    def _check_tokens(cls, v: list[str]) -> list[str]:
        for t in v:
            _require_ref(t, "service.api_tokens entries")
        return v


class Settings(_Model):
    """The whole config file."""

    version: int = 1
    store: StoreConfig = Field(default_factory=StoreConfig)
    mappings_dir: str = "mappings"
    connectors: list[ConnectorConfig] = Field(default_factory=list)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    precedence: PrecedenceConfig = Field(default_factory=PrecedenceConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    sinks: list[SinkConfig] = Field(default_factory=list)
    reminders: RemindersConfig = Field(default_factory=RemindersConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)  # settings/lifecycle.py
    reports: ReportsConfig = Field(default_factory=ReportsConfig)  # settings/lifecycle.py
    http: HttpConfig = Field(default_factory=HttpConfig)  # request limits and web sessions (settings/http.py)

    # Not part of the YAML: where it was read from (for relative paths and messages).
    source_path: str | None = Field(default=None, exclude=True)

    def connector(self, name: str) -> ConnectorConfig:
        for c in self.connectors:
            if c.name == name:
                return c
        known = ", ".join(c.name for c in self.connectors) or "none"
        raise ConfigError([f"no connector named {name!r} in the config (configured: {known})"])

    def sink(self, name: str) -> SinkConfig:
        """The sink instance called `name`; ConfigError naming the configured ones otherwise."""
        for c in self.sinks:
            if c.name == name:
                return c
        known = ", ".join(c.name for c in self.sinks) or "none"
        raise ConfigError([f"no sink named {name!r} in the config (configured: {known})"])

    def base_dir(self) -> Path:
        return Path(self.source_path).resolve().parent if self.source_path else Path.cwd()

    def mapping_path(self, conn: ConnectorConfig, default_name: str) -> Path:
        """The mapping file of a connector: its `mapping:`, else <mappings_dir>/<instance name>.yaml when that
        exists (a per-instance variant), else <mappings_dir>/<type>.yaml when that exists, else the mapping
        bundled with itam-sync for the type (so a config outside the repository needs no mappings/ folder)."""
        if conn.mapping:
            return self._resolve_path(conn.mapping)
        base = self._resolve_path(self.mappings_dir)
        own = base / f"{conn.name}.yaml"
        if own.exists():
            return own
        typed = base / f"{default_name}.yaml"
        bundled = bundled_mapping(default_name)
        return typed if typed.exists() or bundled is None else bundled

    def _resolve_path(self, p: str) -> Path:
        path = Path(p)
        if path.is_absolute() or path.exists():
            return path
        # Relative paths work from the working directory or from the project root next to config/.
        for base in (self.base_dir(), self.base_dir().parent):
            if (base / path).exists():
                return base / path
        return path

    def connector_types(self) -> dict[str, str]:
        return {c.name: c.type for c in self.connectors}


class ConfigError(Exception):
    """A config file is wrong; `problems` lists every problem found, each with where and how to fix."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
