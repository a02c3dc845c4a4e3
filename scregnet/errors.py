"""Errors that name the file, the row or column, and what was expected."""

from __future__ import annotations


class ScregnetError(Exception):
    """Base class: every message is meant to be shown to a user as-is."""


class DataError(ScregnetError):
    """Input data is missing or malformed."""

    def __init__(self, message: str, path: object | None = None):
        self.path = str(path) if path is not None else None
        super().__init__(f"{path}: {message}" if path is not None else message)


class ExpressionMissingError(DataError):
    """A dataset directory has labels but no expression matrix (e.g. BEELINE hESC, mHSC-E)."""


class ValidationFailed(ScregnetError):
    """One or more validation checks failed; `problems` holds one line per problem."""

    def __init__(self, problems: list[str], report_path: str | None = None):
        self.problems = problems
        self.report_path = report_path
        lines = "\n".join(f"  - {p}" for p in problems)
        tail = f"\nFull report: {report_path}" if report_path else ""
        super().__init__(f"input validation failed ({len(problems)} problem(s)):\n{lines}{tail}")


class ConfigError(ScregnetError, ValueError):
    """The run configuration (YAML or command-line values) is invalid; one line per bad key."""
