"""Where the per-image stages and HEML's tree levels run.

- ``local`` (the default): this process, threads for decoding; needs no service.
- ``ray``: validation, segmentation and part statistics run as Ray Data ``map_batches``
  stages (model stages in actor pools, one GPU per actor when the cluster has GPUs), and
  the nodes of one HEML tree level train as parallel Ray tasks. ``address`` joins an
  existing cluster (``ray start --head`` on one machine); without it a local Ray
  instance is started. The dataset and workspace paths must be readable (and the
  workspace writable) on every node.

The engine is chosen for a block of work with :func:`use_engine`, as joblib's
``parallel_backend`` chooses one for scikit-learn: the stages deep inside ask
:func:`current_engine` rather than every function in between passing it along. Whatever
the engine, the workspace files are the same, row for row.

>>> current_engine().name
'local'
>>> with use_engine("ray", address="head:6379"):
...     current_engine().address
'head:6379'
>>> current_engine().is_ray
False
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from biasaudit.core.errors import BiasauditError, MissingExtraError, ValidationError

ENGINES = ("local", "ray")
RAY_EXTRA_MESSAGE = "--engine ray needs the ray extra: pip install 'biasaudit[ray]'"


@dataclass(frozen=True)
class Engine:
    """An engine choice: ``name`` in :data:`ENGINES`; ``address`` of a Ray cluster
    (None: start a local instance with ``num_cpus`` CPUs, default all available)."""

    name: str = "local"
    address: str | None = None
    num_cpus: int | None = None

    @property
    def is_ray(self) -> bool:
        return self.name == "ray"


LOCAL = Engine()
_CURRENT: contextvars.ContextVar[Engine | None] = contextvars.ContextVar("biasaudit_engine", default=None)


def make_engine(name: str = "local", *, address: str | None = None, num_cpus: int | None = None) -> Engine:
    """A checked :class:`Engine` (``--engine`` / ``--address`` on the command line).

    >>> make_engine("ray").is_ray
    True
    """
    if name not in ENGINES:
        raise ValidationError(f"--engine must be one of {', '.join(ENGINES)}; got {name!r}.")
    if address is not None and name != "ray":
        raise ValidationError(f"--address {address} names a Ray cluster; it needs --engine ray.")
    return Engine(name=name, address=address or None, num_cpus=num_cpus)


def current_engine() -> Engine:
    """The engine chosen by the innermost :func:`use_engine` (``local`` outside any)."""
    return _CURRENT.get() or LOCAL


@contextlib.contextmanager
def use_engine(engine: str | Engine = "local", *, address: str | None = None) -> Iterator[Engine]:
    """Run the enclosed stages on ``engine``; nothing is started until a stage needs it."""
    chosen = engine if isinstance(engine, Engine) else make_engine(engine, address=address)
    token = _CURRENT.set(chosen)
    try:
        yield chosen
    finally:
        _CURRENT.reset(token)


def import_ray():
    """``ray`` (with Ray Data), or :class:`MissingExtraError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra is ray[data])
    except ImportError:
        raise MissingExtraError(RAY_EXTRA_MESSAGE) from None
    return ray


def ray_session(engine: Engine | None = None):
    """Connect to ``engine.address`` or start a local Ray instance (once per process), and
    return the ``ray`` module. Worker threads wait passively, as in :mod:`biasaudit.core.threads`."""
    from biasaudit.core.threads import PASSIVE_ENV, available_cpus

    engine = engine or current_engine()
    ray = import_ray()
    if not ray.is_initialized():
        env = {**PASSIVE_ENV, "BIASAUDIT_PROGRESS": "0"}
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "logging_level": logging.ERROR, "runtime_env": {"env_vars": env}}
        try:
            if engine.address:
                ray.init(address=engine.address, **kwargs)
            else:
                ray.init(num_cpus=engine.num_cpus or available_cpus(), **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {engine.address}" if engine.address else "a local Ray instance"
            raise BiasauditError(
                f"--engine ray could not start or reach {where} ({str(exc).splitlines()[0]}). Start the "
                f"head with `ray start --head` and pass --address HEAD:6379, or drop --address to run "
                f"a local instance."
            ) from None
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    # Python objects (dataset samples) travel pickled by Ray; the notice about it is noise here.
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    return ray


def ray_resources() -> tuple[int, int]:
    """(CPUs, GPUs) of the connected cluster."""
    import ray

    res = ray.cluster_resources()
    return max(1, int(res.get("CPU", 1))), int(res.get("GPU", 0))


def ray_map_batches(
    fn: Callable[..., Any] | type,
    items: Sequence[Any],
    *,
    batch_size: int,
    actors: int | None = None,
    gpus_per_actor: float = 0.0,
    constructor_kwargs: dict[str, Any] | None = None,
    desc: str | None = None,
) -> Iterator[Any]:
    """Map ``fn`` over ``items`` as one Ray Data ``map_batches`` stage and yield one
    result per item, in the items' order.

    ``fn`` takes a list of items and returns a list of JSON-serialisable results, one
    per item. A function runs as Ray tasks; a class is built once per actor (with
    ``constructor_kwargs``: load a model there) in an actor pool of ``actors`` actors
    (default: one per CPU, or per GPU when ``gpus_per_actor`` > 0), each call getting
    at most ``batch_size`` items. Results travel as JSON text, so they come back with
    exactly the Python types they left with. ``desc``: show a progress bar.
    """
    from biasaudit.core.progress import progress

    ray = ray_session()
    if not items:
        return iter(())
    n_batches = -(-len(items) // batch_size)
    indexed = [{"i": k, "item": item} for k, item in enumerate(items)]
    ds = ray.data.from_items(indexed, override_num_blocks=n_batches)
    options: dict[str, Any] = {"batch_size": batch_size, "batch_format": "numpy", "zero_copy_batch": False}
    if isinstance(fn, type):
        cpus, gpus = ray_resources()
        if actors is None:
            actors = max(1, gpus if gpus_per_actor > 0 and gpus else cpus)
        options["compute"] = ray.data.ActorPoolStrategy(size=max(1, min(actors, n_batches)))
        options["fn_constructor_kwargs"] = {"cls": fn, "kwargs": constructor_kwargs or {}}
        options["num_cpus"] = 1
        if gpus_per_actor > 0:
            options["num_gpus"] = gpus_per_actor
        udf: Any = _ActorBatches
    else:
        options["fn_kwargs"] = {"fn": fn}
        udf = _task_batches
    out = ds.map_batches(udf, **options)
    ordered = _in_order(out, len(items), desc or "ray")
    return ordered if desc is None else progress(ordered, desc=desc, total=len(items))


def _in_order(out, n: int, desc: str) -> Iterator[Any]:
    # preserve_order is set, but results are keyed by item index anyway: the order the
    # caller sees must not depend on how Ray scheduled the blocks
    pending: dict[int, Any] = {}
    nxt = 0
    for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
        for k, text in zip(batch["i"].tolist(), batch["json"].tolist(), strict=True):
            pending[int(k)] = json.loads(text)
        while nxt in pending:
            yield pending.pop(nxt)
            nxt += 1
    if nxt != n or pending:
        raise BiasauditError(f"Ray stage '{desc}' returned {nxt} of {n} results in order; re-run the command.")


def _encode(idx, results: list[Any]) -> dict[str, Any]:
    import numpy as np

    if len(results) != len(idx):
        raise BiasauditError(f"a Ray stage returned {len(results)} results for {len(idx)} items.")
    return {"i": np.asarray(idx, dtype=np.int64),
            "json": np.array([json.dumps(r, default=_json_default) for r in results], dtype=object)}


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if type(obj).__name__ == "NAType":  # pandas' missing value (a missing image size)
        return None
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _task_batches(batch: dict[str, Any], fn: Callable[[list[Any]], list[Any]]) -> dict[str, Any]:
    return _encode(batch["i"], fn(list(batch["item"])))


class _ActorBatches:
    """Ray Data callable class: builds ``cls(**kwargs)`` once per actor."""

    def __init__(self, cls: type, kwargs: dict[str, Any]) -> None:
        self.fn = cls(**kwargs)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return _encode(batch["i"], self.fn(list(batch["item"])))
