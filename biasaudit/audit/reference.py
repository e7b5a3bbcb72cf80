"""``--reference FILE``: the shares a user expects attribute values to have.

Under-representation is judged against these shares instead of the default even share
(population shares of skin tones, hair colours, ...). A CSV with a header
``attribute,value,share`` or a JSON list of such objects, or a JSON object
``{"hair colour": {"gray": 0.05, ...}}``. ``attribute`` is a schema part and an
attribute kind, as findings write them: ``hair colour``, ``hat presence``,
``skin size``. A value the reference names that no image has is a finding too.

>>> import json, tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "ref.json"
>>> _ = path.write_text(json.dumps({"hair colour": {"gray": 0.1, "blond": 0.2}}))
>>> load_reference(path)
{('hair', 'colour'): {'gray': 0.1, 'blond': 0.2}}
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from biasaudit.audit.inputs import MASK_ATTRIBUTES
from biasaudit.core.errors import ValidationError

_ALIASES = {"color": "colour"}


def _split(attribute: str, where: str) -> tuple[str, str]:
    words = str(attribute).replace(":", " ").split()
    if len(words) < 2:
        raise ValidationError(
            f"{where}: attribute '{attribute}' must name a part and an attribute kind, e.g. 'hair colour'.")
    kind = _ALIASES.get(words[-1].lower(), words[-1].lower())
    if kind not in MASK_ATTRIBUTES:
        raise ValidationError(
            f"{where}: attribute '{attribute}' ends in '{words[-1]}'; expected one of "
            f"{', '.join(MASK_ATTRIBUTES)} (e.g. 'hair colour').")
    return " ".join(words[:-1]), kind


def load_reference(path: str | Path) -> dict[tuple[str, str], dict[str, float]]:
    """{(part, attribute kind): {value: expected share}} from a CSV or JSON file."""
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"--reference {path}: no such file; give a CSV or JSON of attribute,value,share.")
    rows: list[tuple[str, str, object, str]] = []
    try:
        if path.suffix.lower() == ".json":
            doc = json.loads(path.read_text("utf-8"))
            if isinstance(doc, dict):
                for attribute, values in doc.items():
                    if not isinstance(values, dict):
                        raise ValidationError(
                            f"--reference {path}: '{attribute}' must map values to shares, "
                            f"e.g. {{\"gray\": 0.05}}; found {type(values).__name__}.")
                    rows += [(attribute, v, s, f"{path} '{attribute}'") for v, s in values.items()]
            elif isinstance(doc, list):
                rows += [(r.get("attribute"), r.get("value"), r.get("share", r.get("expected_share")),
                          f"{path} item {i + 1}") for i, r in enumerate(doc) if isinstance(r, dict)]
            else:
                raise ValidationError(f"--reference {path}: expected a JSON object or list; found {type(doc).__name__}.")
        else:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
            table.columns = [c.strip().lower() for c in table.columns]
            if "share" not in table and "expected_share" in table:
                table = table.rename(columns={"expected_share": "share"})
            missing = {"attribute", "value", "share"} - set(table.columns)
            if missing:
                raise ValidationError(
                    f"--reference {path}: missing column(s) {', '.join(sorted(missing))}; the header must be "
                    f"attribute,value,share (found {', '.join(table.columns)}).")
            rows += [(r.attribute, r.value, r.share, f"{path} line {i + 2}")
                     for i, r in enumerate(table.itertuples(index=False))]
    except (json.JSONDecodeError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ValidationError(f"--reference {path}: cannot be read as {path.suffix or 'CSV'} ({exc}).") from None
    return _collect(rows, path)


def _collect(rows: Iterable[tuple], path: Path) -> dict[tuple[str, str], dict[str, float]]:
    out: dict[tuple[str, str], dict[str, float]] = {}
    for attribute, value, share, where in rows:
        if attribute is None or value is None or share is None:
            raise ValidationError(f"{where}: needs attribute, value and share.")
        try:
            share = float(share)
        except (TypeError, ValueError):
            raise ValidationError(f"{where}: share '{share}' is not a number; expected a share in (0, 1].") from None
        if not 0 < share <= 1:
            raise ValidationError(f"{where}: share {share} is outside (0, 1]; give e.g. 0.05 for 5%.")
        key = _split(attribute, where)
        out.setdefault(key, {})[str(value).strip()] = share
    if not out:
        raise ValidationError(f"--reference {path}: lists no shares; expected rows of attribute,value,share.")
    for (part, kind), shares in out.items():
        if sum(shares.values()) > 1.001:
            raise ValidationError(
                f"--reference {path}: the shares of '{part} {kind}' add up to {sum(shares.values()):.3f}; "
                f"shares of one attribute must add up to at most 1.")
    return out


def check_reference_parts(reference: dict[tuple[str, str], dict[str, float]], parts: Iterable[str]) -> None:
    """Every part a reference names must be a part of the schema."""
    parts = list(parts)
    unknown = sorted({p for p, _ in reference if p not in parts})
    if unknown:
        raise ValidationError(
            f"--reference: {', '.join(unknown)} not part(s) of the dataset's schema. Expected names from: "
            f"{', '.join(parts)}.")
