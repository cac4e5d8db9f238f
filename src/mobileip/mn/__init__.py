"""Mobile node daemon."""
