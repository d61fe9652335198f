"""Imports every command module so each registers its commands on the app."""

from modelpack.cli import build_cmds, init_cmds, inspect_cmds, push_cmds, registry_cmds  # noqa: F401
from modelpack.cli import release_cmds  # noqa: F401
from modelpack.cli import test_cmds  # noqa: F401
