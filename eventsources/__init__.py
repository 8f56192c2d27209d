"""eventsources."""
