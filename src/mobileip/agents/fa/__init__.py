"""Foreign agent: relay rules, visitor list, daemon."""
