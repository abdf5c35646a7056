"""guestwatch collector: discovery, agent sessions, the fact model, scheduling and liveness."""

__version__ = "0.1.0"
