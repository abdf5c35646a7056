"""Guest side: the fleet simulator and (later) the reference guest agent."""
