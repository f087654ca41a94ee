"""Loading pydantic-settings models once, with errors that name the field."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsError

from elcrec.exceptions import ConfigError

S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S], what: str, **overrides: Any) -> S:
    """Read the environment, apply ``overrides`` (None values skipped), validate.

    Raises:
        ConfigError: one clause per bad field, each naming the field and, where
            the class reads the environment, its variable.
    """
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


def describe(exc: ValidationError, cls: type[BaseSettings] | None = None) -> str:
    prefix = (cls.model_config.get("env_prefix") or "") if cls else ""
    lines = []
    for err in exc.errors(include_url=False):
        if err["loc"]:
            name = ".".join(str(p) for p in err["loc"])
            env = f" (env {prefix}{name.upper()})" if prefix else ""
            lines.append(f"{name}{env}: {err['msg']} (got {err.get('input')!r})")
        else:
            lines.append(err["msg"].removeprefix("Value error, "))
    return "; ".join(lines)
