"""The wire plugin."""
