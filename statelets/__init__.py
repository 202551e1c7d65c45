"""statelets (work in progress)."""
