"""Only job: compile uring's cffi extension at install (cffi_modules must be a
setup() argument; pyproject.toml carries everything else)."""
from setuptools import setup

setup(cffi_modules=["uring/_build.py:ffibuilder"])
