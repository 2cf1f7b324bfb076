"""chrono."""
