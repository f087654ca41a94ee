"""The root of elcrec's exceptions; each area derives its own from it."""


class ElcrecError(Exception):
    """Base class of every error elcrec raises on purpose.

    The CLI prints these as one line (no traceback) and exits with status 2.
    """


class ConfigError(ElcrecError):
    """A configuration value is invalid; the message names the field."""


class DataError(ElcrecError):
    """An input file cannot be read; the message names the file and line."""
