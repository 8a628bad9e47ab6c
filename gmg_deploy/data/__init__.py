"""Stage: data."""
