"""Imports every command module so each registers its commands on the app."""

from modelpack.cli import (  # noqa: F401
    build_cmds,
    init_cmds,
    inspect_cmds,
    push_cmds,
    registry_cmds,
    release_cmds,
    test_cmds,
)
