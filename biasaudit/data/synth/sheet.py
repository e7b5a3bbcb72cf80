"""A contact sheet of SynthFaces portraits for humans: each portrait above its colourised
mask and a caption with its attributes.

>>> sheet = contact_sheet(SynthFacesConfig(n=4, seed=0), cols=2, rows=1)
>>> sheet.shape
(292, 256, 3)
"""

from __future__ import annotations

import numpy as np

from biasaudit.data.synth.faces import (
    CLOTH_COLOURS,
    HAIR_COLOURS,
    SynthFacesConfig,
    generate_faces,
)

# One distinct colour per celebamask-hq class id (0 background … 18 cloth).
MASK_COLOURS = np.array([
    (0, 0, 0), (230, 190, 160), (255, 120, 60), (0, 220, 255), (60, 60, 255), (120, 0, 255),
    (140, 90, 30), (90, 60, 10), (255, 220, 0), (200, 170, 0), (255, 0, 80), (255, 80, 160),
    (180, 0, 60), (110, 60, 20), (0, 160, 80), (255, 255, 255), (255, 0, 255), (200, 130, 110),
    (60, 120, 200),
], np.uint8)

_PERSON = {"Male": "male", "Smiling": "smiling"}
_WORN = {"Eyeglasses": "glass", "Wearing_Hat": "hat", "Wearing_Earrings": "earr", "Wearing_Necklace": "neckl"}
_CAPTION_H = 36


def colourise_mask(mask: np.ndarray) -> np.ndarray:
    """Class-id mask → RGB picture (ids above 18 shown white).

    >>> colourise_mask(np.array([[0, 13]], np.uint8))[0, 1].tolist()
    [110, 60, 20]
    """
    return MASK_COLOURS[np.minimum(mask, len(MASK_COLOURS) - 1)]


def contact_sheet(config: SynthFacesConfig, *, cols: int = 8, rows: int = 4) -> np.ndarray:
    """An RGB uint8 picture of the first ``cols * rows`` portraits of ``config``."""
    import cv2

    size = config.size
    cell_h = 2 * size + _CAPTION_H
    sheet = np.full((rows * cell_h, cols * size, 3), 255, np.uint8)
    count = min(cols * rows, config.n)
    for k, (_, image, mask, attrs) in enumerate(generate_faces(config, indices=range(count))):
        r, c = divmod(k, cols)
        y, x = r * cell_h, c * size
        sheet[y:y + size, x:x + size] = image
        sheet[y + size:y + 2 * size, x:x + size] = colourise_mask(mask)
        hair = next(n for n in HAIR_COLOURS if attrs[n]).split("_")[0].lower()
        cloth = next(n for n in CLOTH_COLOURS if attrs[n]).split("_")[0].lower()
        person = [v for n, v in _PERSON.items() if attrs[n]] + ([] if attrs["Young"] else ["old"])
        lines = (f"{hair} hair, {cloth}", " ".join(person) or "-",
                 " ".join(v for n, v in _WORN.items() if attrs[n]) or "-")
        for i, text in enumerate(lines):
            cv2.putText(sheet, text, (x + 3, y + 2 * size + 10 + 11 * i), cv2.FONT_HERSHEY_PLAIN,
                        0.75, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet
