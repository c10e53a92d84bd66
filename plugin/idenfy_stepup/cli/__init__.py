"""The ``idenfy-stepup`` command: its commands (``commands.main``), the servers they run, the worker
processes of ``serve --workers N`` and the log formats."""

from .commands import main

__all__ = ["main"]
