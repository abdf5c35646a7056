"""The psutil-based reference guest agent (`guestwatch agent`). See README.md here."""

from agent.reference.agent import API_VERSION, DEFAULT_PORT, Cadences, ReferenceAgent

__all__ = ["API_VERSION", "DEFAULT_PORT", "Cadences", "ReferenceAgent"]
