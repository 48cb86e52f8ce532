"""Settings: the config file's models, its loading with file:line:key errors, secret references, starter config.

Owns what a config may say. Imports only itam_sync.model.
"""

from itam_sync.settings.loader import LoadedConfig, format_problem, line_of, load_settings, precedence_orders
from itam_sync.settings.models import (
    DATABASE_URL_ENV,
    REMINDER_RULE_TYPES,
    SECRET_REF,
    ConfigError,
    ConnectorConfig,
    DeliveryConfig,
    EntityPrecedence,
    FieldRuleConfig,
    IdentityConfig,
    PrecedenceConfig,
    ReminderRuleConfig,
    RemindersConfig,
    ServiceConfig,
    Settings,
    SinkConfig,
    SmtpConfig,
    StoreConfig,
    SyncConfig,
    WebConfig,
    WebhookConfig,
    check_schedule,
    parse_duration,
)
from itam_sync.settings.secrets import resolve_secrets

__all__ = [
    "DATABASE_URL_ENV", "REMINDER_RULE_TYPES", "SECRET_REF", "ConfigError", "ConnectorConfig", "DeliveryConfig",
    "EntityPrecedence", "FieldRuleConfig", "IdentityConfig", "LoadedConfig", "PrecedenceConfig",
    "ReminderRuleConfig", "RemindersConfig", "ServiceConfig", "Settings", "SinkConfig", "SmtpConfig",
    "StoreConfig", "SyncConfig", "WebConfig", "WebhookConfig", "check_schedule", "format_problem", "line_of",
    "load_settings", "parse_duration", "precedence_orders", "resolve_secrets",
]
