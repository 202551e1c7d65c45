"""reactor (work in progress)."""
