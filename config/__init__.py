"""Settings of RTARF Event Sync, read from the environment in one place.

    settings.py     what the settings are (frozen dataclasses), Secret, the names others share
    rules.py        one rule per setting, for a variable's text and a pipelines-file value alike
    variables.py    reading one variable under its rule; secrets given directly or in a file
    connections.py  the engine's and the database's connection variables, checked together
    environment.py  load_settings(environ): the only entry that reads RTARF_ variables

`load_settings(environ)` validates every value and fails fast with a `ConfigError` whose message
is a single line naming the variable and the bad value (secrets are masked).
"""

from config.environment import MIN_TOKEN_LENGTH, PIPELINES_FILE_VARIABLE, load_settings
from config.rules import PIPELINE_KEYS, SETTING_RULES, Invalid, Rule
from config.settings import (
    COLUMN_ON_ERROR,
    COLUMN_TYPES,
    DEFAULT_PIPELINE,
    LOOPBACK_BIND,
    PARTITION_KINDS,
    STATE_TABLE_PREFIX,
    WEBHOOK_EVENTS,
    ColumnSpec,
    ConfigError,
    ReconcileSettings,
    Secret,
    Settings,
    VerifySettings,
    WebhookSettings,
    mask_url,
    mask_userinfo,
)
from config.variables import SECRET_FILE_VARIABLES

__all__ = [
    "COLUMN_ON_ERROR",
    "COLUMN_TYPES",
    "DEFAULT_PIPELINE",
    "LOOPBACK_BIND",
    "MIN_TOKEN_LENGTH",
    "PARTITION_KINDS",
    "PIPELINES_FILE_VARIABLE",
    "PIPELINE_KEYS",
    "SECRET_FILE_VARIABLES",
    "SETTING_RULES",
    "STATE_TABLE_PREFIX",
    "WEBHOOK_EVENTS",
    "ColumnSpec",
    "ConfigError",
    "Invalid",
    "ReconcileSettings",
    "Rule",
    "Secret",
    "Settings",
    "VerifySettings",
    "WebhookSettings",
    "load_settings",
    "mask_url",
    "mask_userinfo",
]
