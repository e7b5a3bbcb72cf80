"""SynthFaces: procedurally rendered face portraits with exact part masks and a planted bias.

A dataset is made in two steps. :func:`sample_attributes` draws the CelebA-style 0/1
attribute table (fast, no pixels); :func:`render_face` draws each portrait from its
row. :func:`write_synthfaces` writes the native layout (``images/``, ``masks/``,
``labels.csv``, ``schema.json``, ``synth.json``).

**Attributes.** Hair colour is one-hot over :data:`HAIR_COLOURS` and cloth colour
one-hot over :data:`CLOTH_COLOURS` (palettes in ``_render.HAIR_PALETTE`` /
``CLOTH_PALETTE``, each shade range inside one CIELAB colour name). The binary
attributes :data:`BINARY_ATTRIBUTES` are independent of each other by default with the
marginals in :data:`DEFAULT_MARGINALS`. How each one shows: ``Smiling`` only in the
mouth and lips (upturned corners, usually open with teeth); ``Eyeglasses`` as
``eye_g`` pixels, ``Wearing_Hat`` as ``hat``, ``Wearing_Earrings`` as ``ear_r``,
``Wearing_Necklace`` as ``neck_l`` (present iff the attribute is 1); ``Male`` as short
hair styles, a squarer jaw, thicker brows, sometimes stubble, never lipstick;
``Young=0`` as forehead, nose-to-mouth and eye-corner lines. Nothing else is tied to
``Male`` or ``Young`` (earrings and gray hair are as frequent either way).

**Plants.** ``Plant("Smiling", "Blond_Hair", 0.9)`` makes P(Blond_Hair=1 | Smiling=1)
= 0.9 and P(Blond_Hair=1 | Smiling=0) = 0.1. When a plant sets a hair (cloth) colour
to 0, another colour is drawn in proportion to the other colours' marginals. A label
may itself be planted (``Wearing_Hat:Smiling=0.9`` with ``Smiling:Blond_Hair=0.9``):
columns are drawn parents first; a cycle is an error. ``Rare`` sets a marginal.
``balanced=True`` makes every planted (label, attribute) cell equally frequent.

**Quotas.** Within each group of rows that share the parent's value, the number of
rows taking each value is the expected count, rounded at random (the fractional
parts decide who gets the remaining rows): frequencies match the requested ones to
within one row, and the rows that get each value are a random permutation.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from biasaudit.core.errors import DatasetError, ValidationError
from biasaudit.data.synth._render import CLOTH_PALETTE, HAIR_PALETTE

# The palettes (RGB shade ranges) are documented next to the renderer that uses them.
HAIR_COLOURS: tuple[str, ...] = tuple(HAIR_PALETTE)  # Blond, Black, Brown, Red, Gray_Hair
CLOTH_COLOURS: tuple[str, ...] = tuple(CLOTH_PALETTE)  # Red, Blue, Green, Black, White, Yellow_Cloth
BINARY_ATTRIBUTES: tuple[str, ...] = (
    "Male", "Smiling", "Eyeglasses", "Wearing_Hat", "Wearing_Earrings", "Wearing_Necklace", "Young",
)
ATTRIBUTES: tuple[str, ...] = HAIR_COLOURS + BINARY_ATTRIBUTES + CLOTH_COLOURS

DEFAULT_MARGINALS: dict[str, float] = {
    "Blond_Hair": 0.2, "Black_Hair": 0.3, "Brown_Hair": 0.3, "Red_Hair": 0.08, "Gray_Hair": 0.12,
    "Male": 0.5, "Smiling": 0.5, "Eyeglasses": 0.3, "Wearing_Hat": 0.2, "Wearing_Earrings": 0.3,
    "Wearing_Necklace": 0.2, "Young": 0.75,
    **{name: 1.0 / len(CLOTH_COLOURS) for name in CLOTH_COLOURS},
}

MIN_SIZE, MAX_SIZE = 64, 2048
_PLANT_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(\S+)\s*$")
_RARE_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(\S+)\s*$")
_OUTPUT_NAMES = ("images", "masks", "labels.csv", "schema.json", "synth.json")


# ---- parameters ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plant:
    """P(attribute=1 | label=1) = p and P(attribute=1 | label=0) = 1 - p.

    >>> Plant("Smiling", "Blond_Hair", 0.9).spec
    'Smiling:Blond_Hair=0.9'
    """

    label: str
    attribute: str
    p: float

    def __post_init__(self) -> None:
        where = f"--plant {self.label}:{self.attribute}={self.p}"
        _check_name(self.label, where)
        _check_name(self.attribute, where)
        _check_p(self.p, where)
        if _variable_of(self.label) == _variable_of(self.attribute):
            raise ValidationError(
                f"{where}: '{self.label}' and '{self.attribute}' are the same attribute or two "
                f"values of the same one-hot group ({_variable_of(self.label)}), so one cannot be "
                f"planted on the other. Plant a different label."
            )

    @property
    def spec(self) -> str:
        return f"{self.label}:{self.attribute}={self.p:g}"


@dataclass(frozen=True)
class Rare:
    """Sets the marginal P(attribute=1) = p.

    >>> Rare("Gray_Hair", 0.02).spec
    'Gray_Hair=0.02'
    """

    attribute: str
    p: float

    def __post_init__(self) -> None:
        where = f"--rare {self.attribute}={self.p}"
        _check_name(self.attribute, where)
        _check_p(self.p, where)

    @property
    def spec(self) -> str:
        return f"{self.attribute}={self.p:g}"


def parse_plant(text: str) -> Plant:
    """Parse ``LABEL:ATTRIBUTE=P``.

    >>> parse_plant("Smiling:Blond_Hair=0.9")
    Plant(label='Smiling', attribute='Blond_Hair', p=0.9)
    """
    match = _PLANT_RE.match(str(text))
    if not match:
        raise ValidationError(
            f"--plant '{text}' is not of the form LABEL:ATTRIBUTE=P; write e.g. "
            f"'Smiling:Blond_Hair=0.9' (P(Blond_Hair=1 | Smiling=1) = 0.9)."
        )
    label, attribute, value = match.groups()
    return Plant(label, attribute, _parse_p(value, f"--plant '{text}'"))


def parse_rare(text: str) -> Rare:
    """Parse ``ATTRIBUTE=P``.

    >>> parse_rare("Gray_Hair=0.02")
    Rare(attribute='Gray_Hair', p=0.02)
    """
    match = _RARE_RE.match(str(text))
    if not match:
        raise ValidationError(
            f"--rare '{text}' is not of the form ATTRIBUTE=P; write e.g. 'Gray_Hair=0.02'."
        )
    attribute, value = match.groups()
    return Rare(attribute, _parse_p(value, f"--rare '{text}'"))


@dataclass(frozen=True)
class SynthFacesConfig:
    """What to generate. ``plants`` / ``rares`` accept parsed objects or their strings.

    >>> SynthFacesConfig(n=10, seed=0, plants=("Smiling:Blond_Hair=0.9",)).plants[0].attribute
    'Blond_Hair'
    """

    n: int
    seed: int = 0
    size: int = 128
    plants: tuple[Plant, ...] = field(default_factory=tuple)
    rares: tuple[Rare, ...] = field(default_factory=tuple)
    balanced: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, (int, np.integer)) or self.n < 1:
            raise ValidationError(f"--n must be an integer >= 1 (number of images); got {self.n!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValidationError(f"--seed must be an integer >= 0; got {self.seed!r}.")
        if (isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer))
                or not MIN_SIZE <= self.size <= MAX_SIZE):
            raise ValidationError(
                f"--size must be an integer in [{MIN_SIZE}, {MAX_SIZE}] pixels; got {self.size!r}. "
                f"Faces smaller than {MIN_SIZE} px lose their eyes and earrings."
            )
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "plants", tuple(
            parse_plant(p) if isinstance(p, str) else p for p in _as_tuple(self.plants)))
        object.__setattr__(self, "rares", tuple(
            parse_rare(r) if isinstance(r, str) else r for r in _as_tuple(self.rares)))
        object.__setattr__(self, "balanced", bool(self.balanced))
        _check_design(self)

    def to_dict(self) -> dict:
        return {
            "n": self.n, "seed": self.seed, "size": self.size,
            "plants": [p.spec for p in self.plants], "rares": [r.spec for r in self.rares],
            "balanced": self.balanced,
        }


# ---- the attribute table ------------------------------------------------------------------
def sample_attributes(config: SynthFacesConfig) -> pd.DataFrame:
    """The 0/1 attribute table (column ``image`` then :data:`ATTRIBUTES`), no rendering.

    >>> t = sample_attributes(SynthFacesConfig(n=1000, seed=0, plants=("Smiling:Blond_Hair=0.9",)))
    >>> round(float(t.loc[t.Smiling == 1, "Blond_Hair"].mean()), 2)
    0.9
    """
    n = config.n
    rng = np.random.default_rng([config.seed, 0, 0x5A7])  # never equal to a per-image [seed, i]
    marginals = _marginals(config)
    plant_of = {_variable_of(p.attribute): p for p in config.plants}
    table: dict[str, np.ndarray] = {}
    for var in _draw_order(config.plants):
        members = _members(var)
        base = np.array([marginals[m] for m in members], np.float64)
        plant = plant_of.get(var)
        if plant is None:
            table.update(_assign(rng, members, base, np.arange(n), n))
            continue
        p = 0.5 if config.balanced else plant.p
        parent = table[plant.label]
        shares = _other_shares(config, plant, marginals)
        values = {m: np.zeros(n, np.int8) for m in members}
        for level, q in ((1, p), (0, 1.0 - p)):
            rows = np.flatnonzero(parent == level)
            for m, col in _assign(rng, members, _conditional(members, shares, plant.attribute, q),
                                  rows, n).items():
                values[m] |= col
        table.update(values)
    width = _id_width(n)
    frame = pd.DataFrame({"image": [f"{i:0{width}d}.png" for i in range(n)]})
    for name in ATTRIBUTES:
        frame[name] = table[name].astype(np.int64)
    return frame


# ---- images -------------------------------------------------------------------------------
def render_face(attrs: dict, rng: np.random.Generator, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Render one portrait; see :func:`biasaudit.data.synth._render.render_face`.

    >>> img, mask = render_face({"Smiling": 1}, np.random.default_rng([0, 0]))
    >>> img.dtype.name, mask.shape
    ('uint8', (128, 128))
    """
    from biasaudit.data.synth._render import render_face as _render_face

    return _render_face(attrs, rng, size)


def generate_faces(
    config: SynthFacesConfig, *, indices: Iterable[int] | None = None, table: pd.DataFrame | None = None
) -> Iterator[tuple[str, np.ndarray, np.ndarray, dict[str, int]]]:
    """Yield ``(image_id, image, mask, attrs)`` for every image (or only ``indices``).

    Image ``i`` is rendered from ``np.random.default_rng([seed, i])``, so any subset in
    any order gives the same pixels. ``table`` (the output of :func:`sample_attributes`
    for ``config``) saves drawing it again.

    >>> first = next(generate_faces(SynthFacesConfig(n=2, seed=1)))
    >>> first[0], first[1].shape
    ('00000.png', (128, 128, 3))
    """
    table = (sample_attributes(config) if table is None else table).reset_index(drop=True)
    yield from _faces_from_rows(config, table if indices is None else table.iloc[list(indices)])


def _faces_from_rows(config: SynthFacesConfig, rows: pd.DataFrame):
    """Render ``rows`` of the attribute table; the row's index is the image's position."""
    from biasaudit.data.synth._render import render_face as _render_face

    records = rows[list(ATTRIBUTES)].to_numpy()
    for i, image_id, values in zip(rows.index, rows["image"], records, strict=True):
        attrs = dict(zip(ATTRIBUTES, (int(v) for v in values), strict=True))
        image, mask = _render_face(attrs, np.random.default_rng([config.seed, int(i)]), config.size)
        yield image_id, image, mask, attrs


def write_synthfaces(
    out_dir: str | Path, config: SynthFacesConfig, *, workers: int = 1, overwrite: bool = False
) -> Path:
    """Generate ``config`` into ``out_dir`` (native layout) and return the folder.

    ``synth.json`` is written last: its presence marks a complete dataset. The output
    is byte-identical for the same config, whatever ``workers`` is.

    >>> write_synthfaces("faces", SynthFacesConfig(n=8, seed=0))  # doctest: +SKIP
    PosixPath('faces')
    """
    from biasaudit import __version__
    from biasaudit.core.io import write_json_atomic, write_text_atomic
    from biasaudit.core.progress import progress
    from biasaudit.core.schema import get_schema

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValidationError(f"--workers must be an integer >= 1; got {workers!r}.")
    out = Path(out_dir)
    _prepare_out_dir(out, overwrite=overwrite)
    table = sample_attributes(config)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)

    if workers == 1:
        _write_images(out, config, table, show_progress=True)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # Several chunks per worker keep them busy to the end; each chunk is independent
        # because image i only depends on (seed, i) and its table row.
        chunk = max(1, min(256, -(-config.n // (4 * workers))))
        jobs = [(out, config, table.iloc[s:s + chunk]) for s in range(0, config.n, chunk)]
        ctx = multiprocessing.get_context("spawn")  # fork is unsafe if the caller holds threads
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
            for _ in progress(pool.map(_write_job, jobs), desc="synth faces", total=len(jobs),
                              unit="chunk"):
                pass

    write_text_atomic(out / "labels.csv", table.to_csv(index=False, lineterminator="\n"))
    write_json_atomic(out / "schema.json", get_schema("celebamask-hq").to_dict())
    write_json_atomic(out / "synth.json", {
        "generator": "synthfaces",
        **config.to_dict(),
        "biasaudit_version": __version__,
        "attributes": list(ATTRIBUTES),
        "marginals": _marginals(config),
        "palettes_rgb": {"hair": HAIR_PALETTE, "cloth": CLOTH_PALETTE},
        "image_rng": "numpy.random.default_rng([seed, index])",
    })
    return out


def _write_job(job) -> int:
    out, config, rows = job
    return _write_images(out, config, rows, show_progress=False)


def _write_images(out: Path, config: SynthFacesConfig, rows: pd.DataFrame, *, show_progress: bool) -> int:
    import cv2

    from biasaudit.core.progress import progress

    faces = _faces_from_rows(config, rows)
    if show_progress:
        faces = progress(faces, desc="synth faces", total=len(rows))
    for image_id, image, mask, _ in faces:
        # libpng through OpenCV writes no timestamp or text chunk: same array, same bytes
        # (and it encodes these noisy images faster than Pillow).
        for folder, array in (("images", cv2.cvtColor(image, cv2.COLOR_RGB2BGR)), ("masks", mask)):
            ok, buf = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, 3])
            if not ok:  # pragma: no cover - libpng refuses only impossible shapes
                raise DatasetError(f"could not encode {folder}/{image_id} as PNG")
            (out / folder / image_id).write_bytes(buf.tobytes())
    return len(rows)


def _prepare_out_dir(out: Path, *, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out {out} is a file; give a folder (new or empty) for the dataset.")
    if not out.exists() or not any(out.iterdir()):
        return
    if not overwrite:
        raise DatasetError(
            f"--out {out} is not empty; choose a new or empty folder, or pass --overwrite to "
            f"replace a SynthFaces dataset written there before."
        )
    if not (out / "synth.json").is_file():
        raise DatasetError(
            f"--out {out} is not empty and holds no synth.json, so it is not a SynthFaces dataset; "
            f"--overwrite only replaces SynthFaces output. Choose a new or empty folder."
        )
    for name in _OUTPUT_NAMES:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            os.remove(target)


# ---- design checks and sampling helpers ---------------------------------------------------
def _as_tuple(value) -> tuple:
    if value is None:
        return ()
    if isinstance(value, (str, Plant, Rare)):
        return (value,)
    return tuple(value)


def _check_name(name: str, where: str) -> None:
    if name not in ATTRIBUTES:
        raise ValidationError(
            f"{where}: unknown attribute '{name}'. Expected one of: {', '.join(ATTRIBUTES)}."
        )


def _parse_p(value: str, where: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValidationError(f"{where}: P '{value}' is not a number; give a probability such as 0.9.") from None


def _check_p(p: float, where: str) -> None:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0.0 < float(p) < 1.0:
        raise ValidationError(
            f"{where}: P must be a probability strictly between 0 and 1; got {p!r}. "
            f"For 'always' or 'never' use e.g. 0.99 or 0.01."
        )


def _variable_of(name: str) -> str:
    if name in HAIR_COLOURS:
        return "hair colour"
    if name in CLOTH_COLOURS:
        return "cloth colour"
    return name


def _members(var: str) -> tuple[str, ...]:
    return {"hair colour": HAIR_COLOURS, "cloth colour": CLOTH_COLOURS}.get(var, (var,))


def _variables() -> list[str]:
    return list(dict.fromkeys(_variable_of(a) for a in ATTRIBUTES))


def _draw_order(plants: tuple[Plant, ...]) -> list[str]:
    """Variables, every plant's label before its attribute (Kahn's algorithm, stable order)."""
    parents = {_variable_of(p.attribute): _variable_of(p.label) for p in plants}
    order: list[str] = []
    pending = _variables()
    while pending:
        ready = [v for v in pending if parents.get(v) is None or parents[v] in order]
        if not ready:
            cycle = [p.spec for p in plants if _variable_of(p.attribute) in pending]
            raise ValidationError(
                f"--plant: the plants {', '.join(cycle)} form a cycle (a label depends on its own "
                f"attribute); drop one of them so every label can be drawn before its attributes."
            )
        order.extend(ready)
        pending = [v for v in pending if v not in ready]
    return order


def _check_design(config: SynthFacesConfig) -> None:
    seen: dict[str, Plant] = {}
    for plant in config.plants:
        var = _variable_of(plant.attribute)
        if var in seen:
            raise ValidationError(
                f"--plant {plant.spec} and --plant {seen[var].spec} both set {var}; an attribute "
                f"(or one-hot group such as hair colour) can follow only one label. Keep one."
            )
        seen[var] = plant
    _draw_order(config.plants)
    rare_seen: set[str] = set()
    for rare in config.rares:
        if rare.attribute in rare_seen:
            raise ValidationError(f"--rare {rare.attribute} is given twice; give it once.")
        rare_seen.add(rare.attribute)
        var = _variable_of(rare.attribute)
        if var in seen and seen[var].attribute == rare.attribute:
            raise ValidationError(
                f"--rare {rare.spec}: {rare.attribute} is planted by --plant {seen[var].spec}, so its "
                f"frequency follows from the plant; drop the --rare or the --plant."
            )
    if config.balanced:
        if not config.plants:
            raise ValidationError(
                "--balanced equalises the planted (label, attribute) cells, but no --plant was "
                "given; add a --plant or drop --balanced."
            )
        labels = {_variable_of(p.label) for p in config.plants}
        for rare in config.rares:
            if _variable_of(rare.attribute) in labels:
                raise ValidationError(
                    f"--rare {rare.spec} conflicts with --balanced, which sets every planted label to "
                    f"50 %; drop one of them."
                )
        for group in (HAIR_COLOURS, CLOTH_COLOURS):
            used = sorted({p.label for p in config.plants if p.label in group})
            if len(used) > 2:
                raise ValidationError(
                    f"--balanced cannot give each of {', '.join(used)} 50 % of the images (they "
                    f"are one-hot); plant at most two of them as labels."
                )
    marginals = _marginals(config)
    for plant in config.plants:
        _other_shares(config, plant, marginals)


def _expected_marginal(name: str, config: SynthFacesConfig, marginals: dict[str, float]) -> float:
    """P(name=1) over the whole table, following plants up the chain of labels."""
    for plant in config.plants:
        if _variable_of(plant.attribute) == _variable_of(name):
            if plant.attribute != name:
                break  # another value of a planted one-hot group: its share is set by --rare
            p = 0.5 if config.balanced else plant.p
            m = _expected_marginal(plant.label, config, marginals)
            return m * p + (1.0 - m) * (1.0 - p)
    return marginals[name]


def _other_shares(config: SynthFacesConfig, plant: Plant, marginals: dict[str, float]) -> np.ndarray:
    """How a planted one-hot group shares the rows where the planted value is 0.

    Values with a --rare keep that marginal over the whole table; the rest share what
    is left like their default marginals.
    """
    members = _members(_variable_of(plant.attribute))
    shares = np.zeros(len(members))
    if len(members) == 1:
        return shares
    room = 1.0 - _expected_marginal(plant.attribute, config, marginals)
    rares = {r.attribute: float(r.p) for r in config.rares if r.attribute in members}
    taken = sum(rares.values())
    rest = [m for m in members if m != plant.attribute and m not in rares]
    if taken >= room if rest else not math.isclose(taken, room):
        given = ", ".join(f"{m}={p:g}" for m, p in rares.items())
        raise ValidationError(
            f"--rare {given} with --plant {plant.spec}: {plant.attribute} already takes "
            f"{1 - room:.3g} of the images, leaving {room:.3g} for the other values; lower the --rare "
            f"values so they sum below {room:.3g}."
        )
    rest_total = sum(DEFAULT_MARGINALS[m] for m in rest)
    for k, m in enumerate(members):
        if m in rares:
            shares[k] = rares[m] / room
        elif m in rest:
            shares[k] = DEFAULT_MARGINALS[m] / rest_total * (1.0 - taken / room)
    return shares


def _marginals(config: SynthFacesConfig) -> dict[str, float]:
    """The marginal of every attribute after --rare and --balanced (plants aside)."""
    out = dict(DEFAULT_MARGINALS)
    fixed = {r.attribute: float(r.p) for r in config.rares}
    if config.balanced:
        fixed.update({p.label: 0.5 for p in config.plants})
    for name, p in fixed.items():
        if name in BINARY_ATTRIBUTES:
            out[name] = p
    for group in (HAIR_COLOURS, CLOTH_COLOURS):
        set_here = {m: fixed[m] for m in group if m in fixed}
        if not set_here:
            continue
        total = sum(set_here.values())
        rest = [m for m in group if m not in set_here]
        if (rest and total >= 1.0) or (not rest and not math.isclose(total, 1.0)):
            given = ", ".join(f"{m}={p:g}" for m, p in set_here.items())
            raise ValidationError(
                f"--rare {given}: these one-hot values sum to {total:g}, which leaves "
                f"{'no room for' if rest else 'a gap instead of sharing 100 % among'} the others "
                f"({', '.join(rest) or 'none left'}); lower them so they sum below 1."
            )
        rest_total = sum(DEFAULT_MARGINALS[m] for m in rest)
        for m in group:
            out[m] = set_here[m] if m in set_here else DEFAULT_MARGINALS[m] / rest_total * (1.0 - total)
    return out


def _conditional(members: tuple[str, ...], shares: np.ndarray, attribute: str, q: float) -> np.ndarray:
    """P over ``members`` with P(attribute) = q and the rest split by ``shares``."""
    if len(members) == 1:
        return np.array([q])
    out = shares * (1.0 - q)
    out[members.index(attribute)] = q
    return out


def _assign(rng: np.random.Generator, members: tuple[str, ...], probs: np.ndarray,
            rows: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """0/1 columns for ``members`` over ``rows`` with quota counts (see the module doc)."""
    if len(members) == 1:  # a binary attribute: categories (0, 1)
        cats = np.array([1.0 - probs[0], probs[0]])
    else:
        cats = probs
    m = len(rows)
    expected = cats * m
    counts = np.floor(expected).astype(np.int64)
    left = m - int(counts.sum())
    if left > 0:
        frac = expected - counts
        extra = rng.choice(len(cats), size=left, replace=False, p=frac / frac.sum())
        counts[extra] += 1
    values = np.repeat(np.arange(len(cats)), counts)
    rng.shuffle(values)
    out = {}
    for j, name in enumerate(members):
        col = np.zeros(n, np.int8)
        col[rows] = values == (1 if len(members) == 1 else j)
        out[name] = col
    return out


def _id_width(n: int) -> int:
    return max(5, len(str(n - 1)))
