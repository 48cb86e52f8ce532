"""YAML config -> validated settings.

Problems are reported with the file, line and key that caused them and a hint on how to fix them.
Secrets stay references (`${env:NAME}`, `${file:/path}`) in the settings; `resolve_secrets` turns them into
values only when a connector is built, so they never reach the database, the merge log or the logs.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from itam_sync.model.canonical import FIELDS, EntityType

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
        if v is None:
            return v
        if v.startswith("every "):
            parse_duration(v[6:])
        elif len(v.split()) != 5:
            raise ValueError("schedule must be a 5-field cron expression or 'every <duration>' (e.g. every 15m)")
        return v


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
    batch_size: int = Field(default=2000, ge=1, le=100_000)


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
    """A schedule is a 5-field cron expression or 'every <duration>'."""
    if v is None:
        return v
    if v.startswith("every "):
        parse_duration(v[6:])
    elif len(v.split()) != 5:
        raise ValueError("schedule must be a 5-field cron expression or 'every <duration>' (e.g. every 15m)")
    return v


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
                       "coverage_gap")


class ReminderRuleConfig(_Model):
    """One reminder rule; which keys apply depends on `type` (see the README)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    type: Literal["warranty_ending", "subscription_renewal", "terminated_not_recovered", "device_unseen",
                  "coverage_gap"]
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
        exists (a per-instance variant), else <mappings_dir>/<type>.yaml."""
        if conn.mapping:
            return self._resolve_path(conn.mapping)
        base = self._resolve_path(self.mappings_dir)
        own = base / f"{conn.name}.yaml"
        return own if own.exists() else base / f"{default_name}.yaml"

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


@dataclass
class LoadedConfig:
    settings: Settings
    lines: dict[tuple[Any, ...], int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _node_lines(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    # setdefault: a key's own line wins over its value's (a block value starts on the next line).
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[path + (key,)] = k.start_mark.line + 1
            _node_lines(v, path + (key,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _node_lines(v, path + (i,), out)


def line_of(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    """The YAML line of `loc`, or of its nearest parent that has one."""
    for n in range(len(loc), -1, -1):
        if tuple(loc[:n]) in lines:
            return lines[tuple(loc[:n])]
    return None


def _hint(msg: str, loc: tuple[Any, ...]) -> str:
    if "Extra inputs are not permitted" in msg:
        known = _known_keys(loc)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1) if loc else []
        if close:
            return f"did you mean {close[0]!r}?"
        return f"remove it; known keys here: {', '.join(known)}" if known else "remove it or check its spelling"
    if "Field required" in msg:
        return "add it"
    if "should match pattern" in msg and loc and loc[-1] == "name":
        return "use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit, e.g. hr-export"
    return ""


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the config model allows where `loc` points (for "did you mean" hints)."""
    model: Any = Settings
    skip_key = False
    for part in loc[:-1]:
        if skip_key or isinstance(part, int):  # a list index, or a free-form key (a field name under fields:)
            skip_key = False
            continue
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            return []
        model, skip_key = _model_in(info.annotation)
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def _model_in(annotation: Any) -> tuple[Any, bool]:
    """(the pydantic model inside `annotation`, whether a dict key comes before it in a location)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    args = get_args(annotation)
    if get_origin(annotation) is dict and len(args) == 2:
        return _model_in(args[1])[0], True
    for arg in args:  # list[X], X | None
        found, keyed = _model_in(arg)
        if found is not None:
            return found, keyed
    return None, False


def format_problem(file: str, lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...], msg: str,
                   hint: str = "") -> str:
    line = line_of(lines, loc)
    where = f"{file}:{line}" if line else file
    key = ".".join(str(p) for p in loc) or "(top level)"
    text = f"{where}: {key}: {msg}"
    return f"{text} (fix: {hint})" if hint else text


def load_settings(path: str | Path) -> LoadedConfig:
    """Read and validate a config file; raise ConfigError naming every problem with file and line."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read config: {exc.strerror}"]) from exc
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark else file
        # Where the unclosed bracket or block began is often more useful than where the parser gave up.
        context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        began = f" ({context} that began on line {cmark.line + 1})" if context and cmark else ""
        raise ConfigError([f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}{began}"]) from exc
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _node_lines(node, (), lines)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{file}:1: the config must be a mapping of sections (store, connectors, ...)"])
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = f"unknown key {str(loc[-1])!r}"
            problems.append(format_problem(file, lines, loc, msg, _hint(err["msg"], loc)))
        raise ConfigError(problems) from None
    settings.source_path = file
    # The environment wins over the file: a deployment points the same config at its own database, and a
    # PostgreSQL password stays out of the file (README "Running as a service").
    if env_url := os.environ.get(DATABASE_URL_ENV, "").strip():
        settings.store.url = env_url
    loaded = LoadedConfig(settings=settings, lines=lines)
    problems = _semantic_problems(loaded, file)
    if problems:
        raise ConfigError(problems)
    return loaded


def _semantic_problems(loaded: LoadedConfig, file: str) -> list[str]:
    s, lines = loaded.settings, loaded.lines
    problems: list[str] = []
    seen: set[str] = set()
    for i, c in enumerate(s.connectors):
        if c.name in seen:
            problems.append(format_problem(file, lines, ("connectors", i, "name"),
                                           f"duplicate connector name {c.name!r}", "give each instance its own name"))
        seen.add(c.name)
    sources = seen | {"manual"} | {c.type for c in s.connectors}
    for ent in EntityType:
        prec = s.precedence.for_entity(ent)
        for fname in prec.fields:
            if fname not in FIELDS[ent]:
                close = difflib.get_close_matches(fname, FIELDS[ent], n=3)
                hint = f"did you mean {', '.join(close)}?" if close else f"known fields: {', '.join(FIELDS[ent])}"
                problems.append(format_problem(file, lines, ("precedence", ent.value, "fields", fname),
                                               f"unknown {ent.value} field {fname!r}", hint))
    for loc, order in precedence_orders(s):
        for src in order:
            if src not in sources:
                loaded.warnings.append(format_problem(file, lines, loc,
                                                      f"source {src!r} is not a configured connector name or type"))
        # A source listed twice ranks both above and below the ones between: the order contradicts itself.
        for src in sorted({x for x in order if order.count(x) > 1}):
            at = [str(n + 1) for n, x in enumerate(order) if x == src]
            problems.append(format_problem(file, lines, loc, f"circular precedence: source {src!r} is listed "
                                           f"{len(at)} times (positions {', '.join(at)})", "list each source once"))
    for i, c in enumerate(s.connectors):
        for path, ref_kind, ref in _secret_refs_at(c.settings, ()):
            loc = ("connectors", i, "settings", *path)
            if ref_kind == "env" and ref not in os.environ:
                loaded.warnings.append(format_problem(
                    file, lines, loc, f"environment variable {ref} is not set (needed at run time)"))
            elif ref_kind == "file" and not Path(ref).exists():
                loaded.warnings.append(format_problem(file, lines, loc, f"secret file {ref} does not exist"))
    problems += _publishing_problems(loaded, file)
    return problems


def _publishing_problems(loaded: LoadedConfig, file: str) -> list[str]:
    """Sinks and reminders: unique names, a delivery for the rules, the keys each rule type needs."""
    s, lines = loaded.settings, loaded.lines
    problems: list[str] = []
    seen: set[str] = set()
    for i, c in enumerate(s.sinks):
        if c.name in seen:
            problems.append(format_problem(file, lines, ("sinks", i, "name"), f"duplicate sink name {c.name!r}",
                                           "give each sink its own name"))
        seen.add(c.name)
        if c.name in {conn.name for conn in s.connectors}:
            # Runs are recorded by name: a sink's pushes and a connector's syncs must not be confused.
            problems.append(format_problem(file, lines, ("sinks", i, "name"),
                                           f"sink name {c.name!r} is also a connector name",
                                           "give the sink its own name, e.g. " + f"{c.name}-out"))
        for ref_kind, ref in _secret_refs(c.settings):
            if ref_kind == "env" and ref not in os.environ:
                loaded.warnings.append(format_problem(file, lines, ("sinks", i, "settings"),
                                                      f"environment variable {ref} is not set (needed at run time)"))
    rem = s.reminders
    refs = {("reminders", "delivery", "slack_webhook"): rem.delivery.slack_webhook,
            ("reminders", "delivery", "smtp", "password"): rem.delivery.smtp.password if rem.delivery.smtp else None}
    for loc, value in refs.items():
        for ref_kind, ref in _secret_refs(value):
            if ref_kind == "env" and ref not in os.environ:
                loaded.warnings.append(format_problem(file, lines, loc,
                                                      f"environment variable {ref} is not set (needed at run time)"))
    if rem.rules and rem.delivery.smtp is None and rem.delivery.slack_webhook is None:
        problems.append(format_problem(file, lines, ("reminders", "delivery"),
                                       "reminder rules are configured but no delivery",
                                       "add reminders.delivery.smtp or reminders.delivery.slack_webhook"))
    needs_days = {"warranty_ending", "terminated_not_recovered", "device_unseen"}
    rule_names: set[str] = set()
    for i, r in enumerate(rem.rules):
        if r.name in rule_names:
            problems.append(format_problem(file, lines, ("reminders", "rules", i, "name"),
                                           f"duplicate reminder rule name {r.name!r}", "give each rule its own name"))
        rule_names.add(r.name)
        if r.type in needs_days and r.days is None:
            problems.append(format_problem(file, lines, ("reminders", "rules", i),
                                           f"rule {r.name!r} ({r.type}) needs `days`", "add e.g. days: 30"))
    return problems


def precedence_orders(s: Settings) -> list[tuple[tuple[Any, ...], list[str]]]:
    """Every source order in the precedence section, with its location in the config."""
    out: list[tuple[tuple[Any, ...], list[str]]] = [(("precedence", "default"), s.precedence.default)]
    for ent in EntityType:
        prec = s.precedence.for_entity(ent)
        if prec.default:
            out.append((("precedence", ent.value, "default"), prec.default))
        out += [(("precedence", ent.value, "fields", f, "order"), r.order) for f, r in prec.fields.items() if r.order]
    return out


def _secret_refs_at(value: Any, path: tuple[Any, ...]) -> list[tuple[tuple[Any, ...], str, str]]:
    """(location, kind, reference) of every secret reference in `value`."""
    if isinstance(value, str):
        return [(path, m.group(1), m.group(2)) for m in SECRET_REF.finditer(value)]
    if isinstance(value, dict):
        return [r for k, v in value.items() for r in _secret_refs_at(v, (*path, k))]
    if isinstance(value, list):
        return [r for i, v in enumerate(value) for r in _secret_refs_at(v, (*path, i))]
    return []


def _secret_refs(value: Any) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(m.group(1), m.group(2)) for m in SECRET_REF.finditer(value)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _secret_refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _secret_refs(v)]
    return []


def resolve_secrets(value: Any, where: str = "settings") -> Any:
    """Replace ${env:X} and ${file:P} references with their values (at run time only)."""
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            kind, ref = m.group(1), m.group(2)
            if kind == "env":
                if ref not in os.environ:
                    raise ConfigError([f"{where}: environment variable {ref} is not set "
                                       f"(fix: export {ref}=... before running)"])
                return os.environ[ref]
            try:
                return Path(ref).read_text().strip()
            except OSError as exc:
                raise ConfigError([f"{where}: cannot read secret file {ref}: {exc.strerror}"]) from exc
        return SECRET_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: resolve_secrets(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_secrets(v, where) for v in value]
    return value
