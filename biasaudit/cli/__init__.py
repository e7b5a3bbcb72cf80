"""The ``biasaudit`` command line: thin commands that parse options and call one library
function each (one module per command). Errors a user can cause surface as
``click.ClickException`` (message, exit 1, no traceback)."""

from __future__ import annotations

import importlib
import os

import click

from biasaudit import __version__
from biasaudit.core.errors import BiasauditError
from biasaudit.core.threads import keep_freed_heap

# (module, command attribute); each module under biasaudit/cli/ defines one command.
COMMANDS: list[tuple[str, str]] = [
    ("biasaudit.cli.validate", "validate"),
    ("biasaudit.cli.segment", "segment"),
    ("biasaudit.cli.synth", "synth"),
    ("biasaudit.cli.scan", "scan"),
    ("biasaudit.cli.demo", "demo"),
    ("biasaudit.cli.explain", "explain"),
    ("biasaudit.cli.rebalance", "rebalance"),
    ("biasaudit.cli.evaluate", "evaluate"),
    ("biasaudit.cli.probe", "probe"),
    ("biasaudit.cli.heml", "heml"),
    ("biasaudit.cli.report", "report"),
]


class _Group(click.Group):
    """Turns library errors into clean CLI errors instead of tracebacks."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BiasauditError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="biasaudit")
@click.option("-q", "--quiet", is_flag=True, help="Hide progress bars.")
def main(quiet: bool) -> None:
    """Audit image datasets for part-level bias, explain it, and repair it.

    \b
    Typical flow:
      biasaudit validate DATA            check every file, list problems
      biasaudit synth faces --out DATA   generate a dataset with a planted bias
      biasaudit demo                     run the whole pipeline on a generated dataset
    """
    if quiet:
        os.environ["BIASAUDIT_PROGRESS"] = "0"
    keep_freed_heap()  # every command that runs torch on the CPU allocates and frees per batch


for _module, _attr in COMMANDS:
    main.add_command(getattr(importlib.import_module(_module), _attr))
