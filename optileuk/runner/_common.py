"""Errors shared by the runner's modules (kept below them so imports never circle)."""

from __future__ import annotations

from optileuk.errors import OptileukError


class RunFailed(OptileukError):
    """The run stopped because candidates kept failing (or no worker could evaluate them)."""
