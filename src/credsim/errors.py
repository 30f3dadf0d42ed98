"""Errors credsim raises on purpose. The CLI prints their message and exits non-zero."""

from __future__ import annotations


class CredsimError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""


class SchemeError(CredsimError):
    """A scheme, scenario or bibliography file is malformed; the message names file, line, path."""


class RunExistsError(CredsimError):
    """The run folder exists and is not empty: a run is never silently overwritten."""


class RunStoreError(CredsimError):
    """A run folder is missing, incomplete or does not hold what was asked for."""


class QueryError(CredsimError):
    """A SQL query over a run failed."""
