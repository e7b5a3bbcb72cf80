"""One place that decides how progress is shown, so every stage behaves the same."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress_enabled() -> bool:
    # BIASAUDIT_PROGRESS=0 silences bars (CI logs, tests); the CLI's --quiet sets it.
    return os.environ.get("BIASAUDIT_PROGRESS", "1") not in ("0", "false", "no")


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None, unit: str = "img") -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar on stderr (hidden for runs shorter than a second).

    >>> list(progress(range(3), desc="demo"))
    [0, 1, 2]
    """
    from tqdm.auto import tqdm

    return iter(
        tqdm(
            iterable,
            desc=desc,
            total=total,
            unit=unit,
            disable=not progress_enabled(),
            delay=1.0,
            dynamic_ncols=True,
            leave=False,
        )
    )
