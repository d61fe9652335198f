"""Imports every command module so each registers its commands on the app."""

from modelpack.cli import build_cmds, push_cmds  # noqa: F401
from modelpack.cli import inspect_cmds  # noqa: F401
