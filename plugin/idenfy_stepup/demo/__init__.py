"""A tiny relying party ("Northwind Bank") that shows what a step-up looks like."""

from .app import create_demo_app

__all__ = ["create_demo_app"]
