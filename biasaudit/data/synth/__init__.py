"""Synthetic dataset generators: SynthFaces (procedural face portraits with exact masks).

>>> from biasaudit.data.synth import SynthFacesConfig, sample_attributes
>>> len(sample_attributes(SynthFacesConfig(n=4, seed=0)))
4
"""

from biasaudit.data.synth.faces import (
    ATTRIBUTES,
    BINARY_ATTRIBUTES,
    CLOTH_COLOURS,
    DEFAULT_MARGINALS,
    HAIR_COLOURS,
    Plant,
    Rare,
    SynthFacesConfig,
    generate_faces,
    parse_plant,
    parse_rare,
    render_face,
    sample_attributes,
    write_synthfaces,
)

__all__ = [
    "ATTRIBUTES",
    "BINARY_ATTRIBUTES",
    "CLOTH_COLOURS",
    "DEFAULT_MARGINALS",
    "HAIR_COLOURS",
    "Plant",
    "Rare",
    "SynthFacesConfig",
    "generate_faces",
    "parse_plant",
    "parse_rare",
    "render_face",
    "sample_attributes",
    "write_synthfaces",
]
