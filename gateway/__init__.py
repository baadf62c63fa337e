"""Telepath's gateway: settings, CLI, the Quart app, services and the call bridge."""

__version__ = "0.1.0"
