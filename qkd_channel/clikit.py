"""Conventions shared by the project's click command lines (``qkd-kme``, ``qkd-notary``,
``qswap``), so that they behave alike:

* **one rule for environment variables**: every option ``--some-name`` of a tool can be
  given as ``<TOOL>_SOME_NAME`` (``QKD_KME_DATA_DIR``, ``QKD_NOTARY_KME_URL``,
  ``QSWAP_HOME``): its long flag, upper case, dashes as underscores; the same variable for
  the same option in every subcommand, and help shows it. A few names that were
  documented before, or that other tools use, are read as well (:data:`ALIASES`);
* defaults are shown in help;
* ``--version`` on the tool;
* subcommands are imported when they run (:class:`LazyGroup`), so ``--help`` answers at once;
* Ctrl-C ends with exit status 130 and one line, never a traceback (:func:`run`).

``tests/test_cli_conventions.py`` walks every option of every command and holds all three
tools to the rule.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import click

from qkd_channel.extras import EXIT_INTERRUPTED

__all__ = [
    "ALIASES",
    "CONTEXT",
    "EXIT_INTERRUPTED",
    "LazyGroup",
    "apply_env_rule",
    "env_name",
    "interrupted",
    "run",
    "version_option",
]


#: Well-known variables of other tools, read after the rule's own (``ALGOD_URL`` is what
#: Algorand's own tools use).
ALIASES: Mapping[str, tuple[str, ...]] = {
    "QSWAP_ALGOD_URL": ("ALGOD_URL",),
    "QSWAP_ALGOD_TOKEN": ("ALGOD_TOKEN",),
    "QKD_NOTARY_NOTARY": ("QKD_NOTARY_URL",),
}

#: ``context_settings`` of every group: defaults in help, ``-h`` as well as ``--help``.
CONTEXT: dict[str, Any] = {"show_default": True, "help_option_names": ["-h", "--help"]}


def env_name(prefix: str, option: click.Option) -> str:
    """The variable the rule gives ``option`` of a tool whose prefix is ``prefix``."""
    long = next(flag for flag in option.opts if flag.startswith("--"))
    return f"{prefix}_{long[2:].upper().replace('-', '_')}"


def apply_env_rule(command: click.Command, prefix: str) -> click.Command:
    """Give every option of ``command`` (and its subcommands, once loaded) its variable."""
    for param in command.params:
        if isinstance(param, click.Option) and param.name and not param.hidden:
            if param.name in ("help", "version"):
                continue
            own = env_name(prefix, param)
            param.envvar = [own, *ALIASES.get(own, ())]
            param.show_envvar = True
    if isinstance(command, click.Group) and not isinstance(command, LazyGroup):
        for sub in command.commands.values():
            apply_env_rule(sub, prefix)
    return command


class LazyGroup(click.Group):
    """A group whose subcommands are ``"module:attribute"`` strings, imported on use.

    ``qkd-notary --help`` used to import web3, py-evm and FastAPI (seconds) to list its
    commands; listing names needs none of it. Each loaded command gets the env rule.
    """

    def __init__(
        self,
        *args: Any,
        lazy: Mapping[str, tuple[str, str]],
        env_prefix: str,
        **kwargs: Any,
    ) -> None:
        """``lazy``: command name -> (``"module:attribute"``, its one-line help)."""
        super().__init__(*args, **kwargs)
        self._lazy = {name: target for name, (target, _) in lazy.items()}
        self._help_lines = {name: line for name, (_, line) in lazy.items()}
        self._env_prefix = env_prefix
        apply_env_rule(self, env_prefix)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self._lazy.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return apply_env_rule(command, self._env_prefix)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the commands with the one-line help given with them: no import."""
        rows = [(name, self._help_lines.get(name, "")) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def version_option(distribution: str = "qkd-notary") -> Callable[[Any], Any]:
    """``--version``: the installed distribution's version."""
    try:
        installed = version(distribution)
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        installed = "unknown"
    return click.version_option(installed, "--version", package_name=distribution)


def run(group: click.Group, prog_name: str) -> None:
    """Run ``group`` as a console script: click's own handling of usage and user errors,
    except that Ctrl-C ends with one line and exit 130 (click would say "Aborted!" and
    exit 1, as for a refused prompt)."""
    try:
        result = group.main(prog_name=prog_name, standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort):
        interrupted()
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(result if isinstance(result, int) else 0)


def interrupted() -> None:
    """One line and exit :data:`EXIT_INTERRUPTED` (Ctrl-C anywhere in a tool)."""
    click.echo("interrupted", err=True)
    sys.exit(EXIT_INTERRUPTED)
