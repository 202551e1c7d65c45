"""Nexmark benchmark: generator and queries for reactor."""
from samples.nexmark.generator import *  # noqa: F401,F403  (the generator's public names)
from samples.nexmark.generator import __all__  # noqa: F401
