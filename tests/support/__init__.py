"""Shared test support: real components (qemu-ga, promtool) and the in-process service."""
