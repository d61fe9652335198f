"""Which module registers which command.

`main()` imports only the module of the command being run, so `modelpack rollback` starts without
paying for the bundle builder or the image code; `--help` (or an unknown command) imports them all so
typer can list or reject them. tests/test_cli.py checks this table against what the modules register.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

COMMANDS = {
    "build": "build_cmds",
    "init": "init_cmds",
    "inspect": "read_cmds",
    "diff": "read_cmds",
    "ls": "read_cmds",
    "list": "read_cmds",
    "push": "transfer_cmds",
    "pull": "transfer_cmds",
    "copy": "transfer_cmds",
    "tag": "transfer_cmds",
    "unpack": "transfer_cmds",
    "promote": "env_cmds",
    "rollback": "env_cmds",
    "history": "env_cmds",
    "archive": "env_cmds",
    "naming": "env_cmds",
    "policy": "policy_cmds",
    "env": "deploy_cmds",  # a typer group: env set | show (the deployment spec)
    "deploy": "deploy_cmds",
    "prune": "retention_cmds",
    "test": "test_cmds",
    "serve": "test_cmds",
    "login": "account_cmds",
    "logout": "account_cmds",
    "gc": "account_cmds",
    "dataset": "dataset_cmds",  # a typer group: dataset push | pull | inspect | ls | diff | used-by
    "keygen": "trust_cmds",
    "sign": "trust_cmds",
    "verify": "trust_cmds",
    "ui": "ui_cmds",
    "run": "runs_cmds",  # an experiment run: `modelpack run -- python train.py`
    "runs": "runs_cmds",  # a typer group: runs ls | show | diff | push
}


def command_name(args: Sequence[str]) -> str | None:
    """The subcommand in `args`: the first word that is not a root option (none of which take a value)."""
    return next((a for a in args if not a.startswith("-")), None)


def load(args: Sequence[str] = ()) -> None:
    name = command_name(args)
    modules = [COMMANDS[name]] if name in COMMANDS else sorted(set(COMMANDS.values()))
    for module in modules:
        importlib.import_module(f"modelpack.cli.{module}")


def load_all() -> None:
    load(())
