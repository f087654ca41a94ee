"""Loading pydantic-settings models once, with errors that name the field."""

from __future__ import annotations

import difflib
import os
from typing import Any, TypeVar

from pydantic import AliasChoices, ValidationError
from pydantic_settings import BaseSettings, SettingsError

from elcrec.exceptions import ConfigError

S = TypeVar("S", bound=BaseSettings)


def load_settings(
    cls: type[S], what: str, reject_unknown_env: bool = False, **overrides: Any
) -> S:
    """Read the environment, apply ``overrides`` (None values skipped), validate.

    ``reject_unknown_env``: a variable with the class's prefix that names no
    field (a misspelling would otherwise be ignored) is an error.

    Raises:
        ConfigError: one clause per bad field, each naming the field and, where
            the class reads the environment, its variable.
    """
    if reject_unknown_env:
        _check_env_names(cls, what)
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return cls(**given)
    except ValidationError as exc:
        raise ConfigError(f"invalid {what} settings: {describe(exc, cls)}") from None
    except SettingsError as exc:  # an environment value that does not parse
        raise ConfigError(
            f"invalid {what} settings: {exc} (list and set values are JSON, "
            'e.g. ["click", "purchase"])'
        ) from None


def _check_env_names(cls: type[BaseSettings], what: str) -> None:
    prefix = (cls.model_config.get("env_prefix") or "").upper()
    known = {n for name in cls.model_fields for n in env_names(cls, name)}
    unknown = sorted(
        k for k in os.environ if k.upper().startswith(prefix) and k.upper() not in known
    )
    if prefix and unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key.upper(), known, n=1)
            hints.append(f"{key} (did you mean {close[0]}?)" if close else key)
        raise ConfigError(
            f"invalid {what} settings: unknown variable(s) {', '.join(hints)}"
        )


def env_names(cls: type[BaseSettings], name: str) -> list[str]:
    """The environment variables a settings field is read from, first first.

    A field with a validation alias is read from the alias names only (the
    class's prefix does not apply to them); otherwise from prefix + NAME.
    """
    alias = cls.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return [c.upper() for c in alias.choices if isinstance(c, str) and c != name]
    if isinstance(alias, str):
        return [alias.upper()]
    return [f"{cls.model_config.get('env_prefix') or ''}{name}".upper()]


def describe(exc: ValidationError, cls: type[BaseSettings] | None = None) -> str:
    reads_env = bool(cls and cls.model_config.get("env_prefix"))
    lines = []
    for err in exc.errors(include_url=False):
        if err["loc"]:
            name = _field_name(cls, str(err["loc"][0])) if cls else str(err["loc"][0])
            rest = "".join(f".{p}" for p in err["loc"][1:])
            env = ""
            if reads_env and name in cls.model_fields:
                env = f" (env {' or '.join(env_names(cls, name))})"
            lines.append(f"{name}{rest}{env}: {err['msg']} (got {err.get('input')!r})")
        else:
            lines.append(err["msg"].removeprefix("Value error, "))
    return "; ".join(lines)


def _field_name(cls: type[BaseSettings], loc: str) -> str:
    """The field an error location names: pydantic reports an aliased field
    under its first alias."""
    if loc in cls.model_fields:
        return loc
    for name in cls.model_fields:
        if loc.upper() in env_names(cls, name):
            return name
    return loc
