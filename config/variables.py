"""Reading one variable: its text, its rule, or a secret given directly or in a file.

    value = setting(environ, "RTARF_SYNC_BATCH_SIZE", 1000)   # under its rule in SETTING_RULES
    token = secret(environ, "RTARF_API_TOKEN")                # or the file RTARF_API_TOKEN_FILE names

A bad value raises `ConfigError` with one line naming the variable and the value (secrets masked
or not shown).
"""

from __future__ import annotations

from typing import Callable, Mapping, TypeVar, cast

from config.rules import SETTING_RULES, Boolean, Choice, Integer, Invalid, Number, Rule
from config.settings import ConfigError, Secret

T = TypeVar("T")

# The secret variables, each of which may instead name a file holding its value (Docker/Kubernetes secrets).
SECRET_FILE_VARIABLES = {
    "RTARF_API_TOKEN": "RTARF_API_TOKEN_FILE",
    "RTARF_ES_PASSWORD": "RTARF_ES_PASSWORD_FILE",
    "RTARF_ES_API_KEY": "RTARF_ES_API_KEY_FILE",
    "RTARF_WEBHOOK_SECRET": "RTARF_WEBHOOK_SECRET_FILE",
    "RTARF_WEBHOOK_URLS": "RTARF_WEBHOOK_URLS_FILE",  # a chat webhook's URL is its secret
    "RTARF_DATABASE_URL": "RTARF_DATABASE_URL_FILE",
    "RTARF_ES_PROXY": "RTARF_ES_PROXY_FILE",  # a proxy URL may carry the proxy's password
}


def raw(environ: Mapping[str, str], name: str) -> str | None:
    """The variable's text, stripped; None when unset or blank."""
    value = environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def refused(name: str, value: str, expected: str) -> ConfigError:
    """The error for a bad value: one line naming the variable, the value as given (masked by the caller)."""
    return ConfigError(f"{name}={value!r} is invalid: expected {expected}")


def setting(environ: Mapping[str, str], name: str, default: T) -> T:
    """Variable `name` under its rule in SETTING_RULES, or `default` when unset."""
    return ruled(environ, name, default, SETTING_RULES[name])


def ruled(environ: Mapping[str, str], name: str, default: T, rule: Rule) -> T:
    """The value of variable `name` under `rule`, or `default` when unset."""
    value = raw(environ, name)
    if value is None:
        return default
    try:
        return cast(T, rule.from_text(value))
    except Invalid as error:
        raise refused(name, value, error.expected) from None


def integer(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    return ruled(environ, name, default, Integer(low, high))


def number(environ: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    return ruled(environ, name, default, Number(low, high))


def boolean(environ: Mapping[str, str], name: str, default: bool) -> bool:
    return ruled(environ, name, default, Boolean())


def choice(
    environ: Mapping[str, str],
    name: str,
    default: str,
    choices: tuple[str, ...],
    normalize: Callable[[str], str] = str.lower,
) -> str:
    return ruled(environ, name, default, Choice(choices, normalize))


def secret_text(environ: Mapping[str, str], name: str) -> str | None:
    """The value of secret variable `name`, or the content of the file `name`_FILE names; never both."""
    file_name = SECRET_FILE_VARIABLES[name]
    value, path = raw(environ, name), raw(environ, file_name)
    if path is None:
        return value
    if value is not None:
        raise ConfigError(f"{name} and {file_name} are both set: give one of them (values not shown)")
    try:
        with open(path, encoding="utf-8") as handle:
            content = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "not readable UTF-8 text"
        raise ConfigError(f"{file_name}={path!r} is invalid: cannot read the file ({reason})") from None
    content = content.rstrip("\r\n")  # the newline an editor or `echo` adds is not part of the secret
    if not content:
        raise ConfigError(f"{file_name}={path!r} is invalid: the file is empty")
    return content


def secret(environ: Mapping[str, str], name: str) -> Secret | None:
    value = secret_text(environ, name)
    return None if value is None else Secret(value)
