"""Agent protocol drivers, one sub-package per protocol."""
