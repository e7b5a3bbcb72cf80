"""Where the per-image stages and HEML's tree levels run.

- ``local`` (the default): this process, ``decode_workers`` threads decoding ahead of the
  models (:func:`decode_ahead`); needs no service.
- ``ray``: validation, segmentation and part statistics run as Ray Data ``map_batches``
  stages (model stages in actor pools, one GPU per actor when the cluster has GPUs), and
  the nodes of one HEML tree level train as parallel Ray tasks. ``address`` joins an
  existing cluster (``ray start --head`` on one machine); without it a local Ray
  instance is started. The dataset and workspace paths must be readable (and the
  workspace writable) on every node.

The engine is chosen for a block of work with :func:`use_engine`, as joblib's
``parallel_backend`` chooses one for scikit-learn: the stages deep inside ask
:func:`current_engine` rather than every function in between passing it along. Whatever
the engine (and however many decoding workers), the workspace files are the same, row for row.

Each per-image stage adds where its time went to ``WS/timings.json`` (:class:`StageClock`):
decoding (summed over the workers) against the model's compute, and how long the model
waited for decoded images, which says whether a stage is bound by decoding or by the model.

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
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biasaudit.core.errors import BiasauditError, MissingExtraError, ValidationError

ENGINES = ("local", "ray")
RAY_EXTRA_MESSAGE = "--engine ray needs the ray extra: pip install 'biasaudit[ray]'"


@dataclass(frozen=True)
class Engine:
    """An engine choice: ``name`` in :data:`ENGINES`; ``address`` of a Ray cluster
    (None: start a local instance with ``num_cpus`` CPUs, default all available);
    ``decode_workers`` threads decoding images on this machine (None: one per CPU this
    process may use, see :func:`default_decode_workers`)."""

    name: str = "local"
    address: str | None = None
    num_cpus: int | None = None
    decode_workers: int | None = None

    @property
    def is_ray(self) -> bool:
        return self.name == "ray"

    @property
    def workers(self) -> int:
        """The decoding threads to start: ``decode_workers`` or the default."""
        return self.decode_workers or default_decode_workers()


LOCAL = Engine()
_CURRENT: contextvars.ContextVar[Engine | None] = contextvars.ContextVar("biasaudit_engine", default=None)


def make_engine(name: str | Engine = "local", *, address: str | None = None, num_cpus: int | None = None,
                decode_workers: int | None = None) -> Engine:
    """A checked :class:`Engine` (``--engine`` / ``--address`` / ``--decode-workers`` on the
    command line); an :class:`Engine` given as ``name`` is returned as it is.

    >>> make_engine("ray").is_ray
    True
    >>> make_engine("local", decode_workers=3).workers
    3
    """
    if isinstance(name, Engine):
        if address is not None or num_cpus is not None or decode_workers is not None:
            raise ValidationError("make_engine() got an Engine and options for it; set them on the Engine.")
        return name
    if decode_workers is not None and (isinstance(decode_workers, bool) or not isinstance(decode_workers, int)
                                       or decode_workers < 1):
        raise ValidationError(f"--decode-workers must be an integer >= 1; got {decode_workers!r}.")
    if name not in ENGINES:
        raise ValidationError(f"--engine must be one of {', '.join(ENGINES)}; got {name!r}.")
    if address is not None and name != "ray":
        raise ValidationError(f"--address {address} names a Ray cluster; it needs --engine ray.")
    return Engine(name=name, address=address or None, num_cpus=num_cpus, decode_workers=decode_workers)


def default_decode_workers() -> int:
    """One decoding thread per CPU this process may run on (``os.sched_getaffinity``): the
    decoders (PIL, OpenCV, zlib) release the GIL, so threads decode in parallel.

    >>> default_decode_workers() >= 1
    True
    """
    from biasaudit.core.threads import available_cpus

    return available_cpus()


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


# --------------------------------------------------------------------------- decoding ahead


@dataclass
class StageClock:
    """Where one per-image stage's time went (accumulated as it runs; mutable, like a stopwatch).

    - ``decode_s``: decoding and preparing inputs, summed over the decoding workers (their
      seconds, whether or not they overlapped with the model);
    - ``wait_s``: time the model side waited for decoded inputs (decoding *not* hidden
      behind compute: a stage bound by decoding has ``wait_s`` close to ``wall_s``);
    - ``compute_s``: the model's forward passes (results copied back, so on a GPU the
      device work is inside it); ``busy`` = ``compute_s / wall_s`` is the device's share;
    - ``other_s``: named extras (``stats_s``: part statistics and label-map cache writes,
      summed over workers; ``validate_s``: validation before the stage; ``write_s``:
      writing outputs).

    On the Ray engine the decoding and the models run on the cluster's workers: only
    ``wall_s`` and ``n_images`` are measured, here on the driver.

    >>> clock = StageClock("segment", decode_workers=2)
    >>> clock.n_images, clock.compute_s = 10, 2.0
    >>> clock.wall_s = 4.0
    >>> clock.as_dict()["images_per_s"], clock.as_dict()["busy"]
    (2.5, 0.5)
    """

    stage: str
    decode_workers: int = 1
    device: str = "cpu"
    engine: str = "local"
    batch_size: int = 0
    n_images: int = 0
    decode_s: float = 0.0
    wait_s: float = 0.0
    compute_s: float = 0.0
    wall_s: float = 0.0
    other_s: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.other_s[name] = self.other_s.get(name, 0.0) + seconds

    @contextlib.contextmanager
    def computing(self) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.compute_s += time.perf_counter() - t0

    def as_dict(self) -> dict[str, Any]:
        wall = max(self.wall_s, 1e-12)
        return {
            "stage": self.stage, "engine": self.engine, "n_images": self.n_images,
            "decode_workers": self.decode_workers, "device": self.device, "batch_size": self.batch_size,
            "wall_s": round(self.wall_s, 4), "decode_s": round(self.decode_s, 4), "wait_s": round(self.wait_s, 4),
            "compute_s": round(self.compute_s, 4), **{k: round(v, 4) for k, v in sorted(self.other_s.items())},
            "images_per_s": round(self.n_images / wall, 3) if self.wall_s > 0 else None,
            "busy": round(self.compute_s / wall, 4) if self.wall_s > 0 else None,
        }


#: ``WS/timings.json``: per stage, the latest :meth:`StageClock.as_dict` (never read back
#: by a stage, so a re-run's outputs do not depend on it)
TIMINGS_FILE = "timings.json"


def record_stage_timing(ws_root: str | Path, clock: StageClock) -> None:
    """Merge ``clock`` into ``WS/timings.json`` under its stage name (atomically)."""
    from biasaudit import __version__
    from biasaudit.core.io import write_json_atomic

    path = Path(ws_root) / TIMINGS_FILE
    doc: dict[str, Any] = {}
    if path.is_file():
        try:
            doc = json.loads(path.read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            doc = {}  # a broken file is only timings: start it again
    stages = doc.get("stages") if isinstance(doc.get("stages"), dict) else {}
    stages[clock.stage] = clock.as_dict()
    write_json_atomic(path, {"biasaudit_version": __version__, "stages": stages})


def read_stage_timings(ws_root: str | Path) -> dict[str, dict[str, Any]]:
    """stage → its timing record from ``WS/timings.json`` ({} when there is none).

    >>> read_stage_timings("WS")["segment"]["images_per_s"]  # doctest: +SKIP
    412.5
    """
    path = Path(ws_root) / TIMINGS_FILE
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text("utf-8")).get("stages") or {})


def decode_ahead(fn: Callable[[Any], Any], items: Iterable[Any], *, pool, ahead: int,
                 clock: StageClock | None = None) -> Iterator[Any]:
    """``fn(item)`` for every item, run on the thread ``pool`` with up to ``ahead`` items in
    flight, yielded in the items' order, so decoding the next batches overlaps with whatever
    the caller does with this one (the model's forward pass). The order, and so every
    output, does not depend on the number of threads. ``clock``: adds the workers' seconds
    to ``decode_s`` and the caller's waiting to ``wait_s``.

    >>> from concurrent.futures import ThreadPoolExecutor
    >>> with ThreadPoolExecutor(2) as pool:
    ...     list(decode_ahead(lambda x: x * x, range(5), pool=pool, ahead=3))
    [0, 1, 4, 9, 16]
    """
    window: deque = deque()
    source = iter(items)

    def fill() -> None:
        while len(window) < max(1, ahead):
            try:
                item = next(source)
            except StopIteration:
                return
            window.append(pool.submit(_timed_call, fn, item))

    fill()
    try:
        while window:
            future = window.popleft()
            t0 = time.perf_counter()
            out, seconds = future.result()
            if clock is not None:
                clock.wait_s += time.perf_counter() - t0
                clock.decode_s += seconds
            fill()
            yield out
    finally:
        for future in window:  # the caller stopped early (an error): do not decode the rest
            future.cancel()


def _timed_call(fn: Callable[[Any], Any], item: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(item)
    return out, time.perf_counter() - t0


# --------------------------------------------------------------------------- Ray


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
