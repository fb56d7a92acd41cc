"""One exception family for Curate; each error carries the exit status the command line returns."""


class CurateError(Exception):
    """Base class: a problem Curate can explain in one line."""

    exit_status = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(CurateError):
    """The configuration or a command-line argument is invalid."""


class DatasetError(CurateError):
    """The input folders cannot be curated (missing, not a folder, no images)."""


class OutputError(CurateError):
    """The output folder cannot be written."""


class GateFailed(CurateError):
    """The quality gate failed; every output has still been written."""

    exit_status = 1
