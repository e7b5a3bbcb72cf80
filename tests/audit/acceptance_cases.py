"""The issue-5 acceptance cases, shared by ``test_scan_acceptance.py`` and
``reports/bench/bench_scan.py``: how each dataset is made, how it is scanned, and what
the scan must find.

A case is judged on the ranked findings of ``run_scan`` (expected evidence on causal
parts is already set apart there):

- a planted bias: the top-ranked *flagged* finding is about the planted part (its node
  contains it) and its attribute names the planted value;
- a rare value: an ``under_representation`` finding on ``hair``, flagged, naming gray;
- a control: no flagged finding at all.

>>> case = CASES["smiling-blond"]
>>> case.plants, case.label
(('Smiling:Blond_Hair=0.9',), 'Smiling')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

SMILE_PARTS = ("mouth", "u_lip", "l_lip")


@dataclass(frozen=True)
class Case:
    name: str
    label: str
    causal: tuple[str, ...]
    plants: tuple[str, ...] = ()
    rares: tuple[str, ...] = ()
    #: planted: the finding's node must contain one of these parts (``within``: consist of them)
    parts: tuple[str, ...] = ()
    within: bool = False
    #: planted: the attribute must contain this word; rare: the value named
    word: str = ""
    kind: str = "planted"  # planted | rare | control
    extra_labels: tuple[str, ...] = ()

    def with_p(self, p: float) -> Case:
        """The same plant at another strength."""
        plants = tuple(f"{s.rsplit('=', 1)[0]}={p:g}" for s in self.plants)
        return replace(self, plants=plants, name=f"{self.name} p={p:g}")


CASES: dict[str, Case] = {c.name: c for c in (
    Case("smiling-blond", "Smiling", SMILE_PARTS, plants=("Smiling:Blond_Hair=0.9",),
         parts=("hair",), word="blond"),
    Case("glasses-redcloth", "Eyeglasses", ("eye_g",), plants=("Eyeglasses:Red_Cloth=0.9",),
         parts=("cloth",), word="red"),
    Case("hat-smiling", "Wearing_Hat", ("hat",), plants=("Wearing_Hat:Smiling=0.9",),
         parts=SMILE_PARTS, within=True),
    Case("rare-gray", "Smiling", SMILE_PARTS, rares=("Gray_Hair=0.02",), parts=("hair",),
         word="gray", kind="rare"),
    # issue 8: hair presence / hair size next to (not touching) the causal lips: a bias, not
    # expected evidence (the independent generator only: Bald / Long_Hair columns)
    Case("smiling-bald", "Smiling", SMILE_PARTS, plants=("Smiling:Bald=0.9",), parts=("hair",),
         word="presence"),
    Case("young-longhair", "Young", SMILE_PARTS, plants=("Young:Long_Hair=0.9",), parts=("hair",),
         word="size"),
    # every label of the planted cases at once, each with its causal parts declared
    Case("control", "Smiling", SMILE_PARTS + ("eye_g", "hat"), kind="control",
         extra_labels=("Eyeglasses", "Wearing_Hat")),
)}


def node_parts(segment: str) -> set[str]:
    return set(segment.split("+"))


def judge(case: Case, findings: Sequence) -> tuple[bool, str]:
    """(passed, one line saying what the scan found) for ``case``.

    ``findings`` are :class:`biasaudit.audit.findings.Finding` objects, ranked.
    """
    flagged = [f for f in findings if f.flagged]
    top = flagged[0] if flagged else None
    top_text = f"{top.segment} / {top.attribute} / {top.severity:.2f}" if top else "(none flagged)"
    if case.kind == "control":
        return not flagged, f"{len(flagged)} flagged; top: {top_text}"
    if case.kind == "rare":
        hits = [f for f in flagged if f.kind == "under_representation" and "hair" in node_parts(f.segment)
                and case.word in f.attribute.lower()]
        text = (f"{hits[0].attribute} sev {hits[0].severity:.2f} (rank {hits[0].rank})" if hits
                else f"no flagged under_representation naming {case.word}; top: {top_text}")
        return bool(hits), text
    if top is None:
        return False, top_text
    parts = node_parts(top.segment)
    ok = parts <= set(case.parts) if case.within else bool(parts & set(case.parts))
    ok = ok and case.word in top.attribute.lower()
    return ok, top_text


def make_dataset(generator: str, out: Path, case: Case, *, n: int, seed: int, size: int = 128) -> Path:
    """Generate ``case``'s dataset with ``generator`` ("synthfaces" | "independent")."""
    if generator == "synthfaces":
        from biasaudit.data.synth import SynthFacesConfig, parse_plant, parse_rare, write_synthfaces

        config = SynthFacesConfig(n=n, seed=seed, size=size,
                                  plants=tuple(parse_plant(p) for p in case.plants),
                                  rares=tuple(parse_rare(r) for r in case.rares))
        return write_synthfaces(out, config, overwrite=True)
    if generator == "independent":
        from independent_faces import write_faces

        return write_faces(out, n=n, seed=seed, plants=case.plants, rares=case.rares, size=size)
    raise ValueError(f"unknown generator {generator!r}")


def scan_case(data: Path, ws: Path, case: Case, *, seed: int, heml: bool = False, device: str = "cpu"):
    """``run_scan`` with the case's label(s) and causal parts."""
    from biasaudit.audit.scan import run_scan

    return run_scan(data, ws, labels=(case.label, *case.extra_labels), causal=case.causal,
                    seed=seed, heml=heml, device=device)
