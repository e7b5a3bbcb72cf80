"""Options several commands share, as decorators, so their names, defaults and help read the
same everywhere.

>>> import click
>>> @click.command()
... @engine_options
... def cmd(engine):
...     click.echo(f"{engine.name} {engine.workers}")
>>> from click.testing import CliRunner
>>> CliRunner().invoke(cmd, ["--decode-workers", "3"]).output
'local 3\\n'
"""

from __future__ import annotations

import functools

import click


def engine_options(fn):
    """``--engine``, ``--address`` and ``--decode-workers`` (alias ``--workers``), handed to
    the command as one checked ``engine``
    (:class:`~biasaudit.core.engine.Engine`)."""

    @click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                  help="Where validation, segmentation, part statistics, HEML's tree levels and embedding "
                       "run: this process, or Ray (Ray Data actor pools; needs the ray extra). Same files and "
                       "findings either way.")
    @click.option("--address", default=None, metavar="HOST:PORT",
                  help="With --engine ray: the Ray cluster to join (the address `ray start --head` prints); "
                       "default: start a local Ray instance. DATA and WS must be visible to every node.")
    @click.option("--decode-workers", "--workers", "decode_workers", type=click.IntRange(min=1), default=None,
                  metavar="N",
                  help="Threads decoding images ahead of the models (and computing part statistics); "
                       "default: one per CPU this process may use. Any N gives the same files.")
    @functools.wraps(fn)
    def wrapper(*args, engine: str, address: str | None, decode_workers: int | None, **kwargs):
        from biasaudit.core.engine import make_engine

        return fn(*args, engine=make_engine(engine, address=address, decode_workers=decode_workers), **kwargs)

    return wrapper
