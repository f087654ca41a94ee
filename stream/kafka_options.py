"""How elcrec's Kafka clients authenticate and encrypt (TLS, SASL), in one place.

Every process that talks to Kafka takes the same security fields:
:class:`~elcrec.consumers.settings.IngestSettings` and the one-shot commands
(``elcrec topics``, ``elcrec replay``, ``elcrec run --kafka``) read them as
``ELCREC_SECURITY_PROTOCOL``, ``ELCREC_SASL_PLAIN_PASSWORD``...;
:class:`~elcrec.consumers.trainer.TrainerSettings` reads its own
``ELCREC_TRAINER_*`` names first and falls back to those, so one set of
credentials serves the whole pipeline. :func:`client_options` turns them into
the keyword arguments of kafka-python's ``KafkaConsumer``, ``KafkaProducer`` and
``KafkaAdminClient``.

Note: only the mechanisms that take a user name and a password can be set from
the environment (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512); GSSAPI and OAUTHBEARER
need objects kafka-python cannot get from a variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    FilePath,
    SecretStr,
    create_model,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Annotated[
    Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
    Field(description="how the Kafka clients connect to the brokers"),
]
SaslMechanism = Annotated[
    Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None,
    Field(description="SASL mechanism; needed with SASL_PLAINTEXT and SASL_SSL"),
]
SaslUsername = Annotated[str | None, Field(description="SASL user name")]
SaslPassword = Annotated[
    SecretStr | None, Field(description="SASL password (keep it in a secret)")
]
CaFile = Annotated[
    FilePath | None,
    Field(
        description="PEM file of the CA that signed the brokers' certificates "
        "(default: the system's CAs)"
    ),
]
CertFile = Annotated[
    FilePath | None,
    Field(description="PEM client certificate, for brokers that ask for one (mTLS)"),
]
KeyFile = Annotated[
    FilePath | None, Field(description="PEM private key of ssl_certfile")
]


class _SecurityChecks(BaseModel):
    """Base of the security mixins: refuses unusable combinations at load."""

    @model_validator(mode="after")
    def _check_security(self):
        problem = security_problem(self)
        if problem:
            raise ValueError(problem)
        return self


# name: (type, default), in the order the settings tables list them
_FIELDS: dict[str, tuple[Any, Any]] = {
    "security_protocol": (SecurityProtocol, "PLAINTEXT"),
    "sasl_mechanism": (SaslMechanism, None),
    "sasl_plain_username": (SaslUsername, None),
    "sasl_plain_password": (SaslPassword, None),
    "ssl_cafile": (CaFile, None),
    "ssl_certfile": (CertFile, None),
    "ssl_keyfile": (KeyFile, None),
}


def security_fields(prefix: str = "ELCREC_") -> type[BaseModel]:
    """A mixin of the security fields for a settings class whose environment
    prefix is ``prefix``.

    With ``ELCREC_`` the fields are plain (read as ``ELCREC_SECURITY_PROTOCOL``
    ...); with another prefix each is read from ``PREFIX_NAME``, else from the
    ``ELCREC_NAME`` the other processes read.
    """
    if prefix == "ELCREC_":
        fields = {name: (t, default) for name, (t, default) in _FIELDS.items()}
    else:
        fields = {
            name: (t, Field(default, validation_alias=_falling_back(name, prefix)))
            for name, (t, default) in _FIELDS.items()
        }
    suffix = prefix.removeprefix("ELCREC_").strip("_").title()
    return create_model(
        f"KafkaSecurityFields{suffix}", __base__=_SecurityChecks, **fields
    )


def _falling_back(name: str, prefix: str) -> AliasChoices:
    return AliasChoices(f"{prefix}{name}".upper(), f"ELCREC_{name}".upper())


KafkaSecurityFields = security_fields()


class KafkaClientSettings(KafkaSecurityFields, BaseSettings):
    """Kafka settings of the one-shot commands (``elcrec topics``, ``elcrec
    replay``; ``elcrec run --kafka`` takes the security fields only): the same
    variables the ingest consumer reads. Their other options are flags."""

    model_config = SettingsConfigDict(
        env_prefix="ELCREC_", frozen=True, populate_by_name=True
    )

    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices(
            "ELCREC_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"
        ),
        description="Kafka bootstrap address(es), comma separated (--kafka)",
    )


def load_client_settings(bootstrap_servers: str | None = None) -> KafkaClientSettings:
    """:class:`KafkaClientSettings` from the environment; ``bootstrap_servers``
    (a ``--kafka`` flag) wins over it when given.

    Raises:
        ConfigError: a bad, incomplete or contradictory value, naming its
            variable.
    """
    from elcrec.settings import load_settings

    return load_settings(
        KafkaClientSettings, "Kafka client", bootstrap_servers=bootstrap_servers
    )


def client_options(settings: Any) -> dict[str, Any]:
    """kafka-python keyword arguments for the security fields of ``settings``
    (validated when the settings were loaded).

    Only what is set is passed, so kafka-python's own defaults hold otherwise.
    """
    protocol = settings.security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL_"):
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_plain_username
        options["sasl_plain_password"] = settings.sasl_plain_password.get_secret_value()
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        value: Path | None = getattr(settings, name)
        if value is not None:
            options[name] = str(value)
    return options


def security_problem(settings: Any) -> str | None:
    """What is missing or contradictory in the security fields, naming the
    variables to set; None when they can be used."""
    protocol = settings.security_protocol
    if protocol.startswith("SASL_"):
        missing = [
            name
            for name in ("sasl_mechanism", "sasl_plain_username", "sasl_plain_password")
            if getattr(settings, name) is None
        ]
        if missing:
            return f"security_protocol {protocol} needs {_named(settings, missing)}"
    if settings.ssl_keyfile is not None and settings.ssl_certfile is None:
        return f"ssl_keyfile is set without {_named(settings, ['ssl_certfile'])}"
    if protocol not in ("SSL", "SASL_SSL"):
        given = [
            name
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
            if getattr(settings, name) is not None
        ]
        if given:
            return (
                f"{_named(settings, given)} set, but security_protocol is "
                f"{protocol}: use SSL or SASL_SSL, or unset them"
            )
    return None


def _named(settings: Any, fields: list[str]) -> str:
    from elcrec.settings import env_names

    return ", ".join(
        f"{name} (env {' or '.join(env_names(type(settings), name))})"
        for name in fields
    )
