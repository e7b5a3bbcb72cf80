"""``mediapipe-face``: an offline face parser built from MediaPipe's bundled models
(``pip install 'biasaudit[face]'``, mediapipe==0.10.14; the legacy ``solutions`` API
ships the face-mesh and selfie-segmentation models inside the wheel, so nothing is
downloaded). Output is in the ``celebamask-hq`` schema.

How each part is drawn (F = face-mesh face oval, P = selfie person mask > 0.5,
``fh``/``fw`` = face height/width, ``cx`` = chin x, "skin-like" = CIE76 ΔE* < 18 to
the median colour of the bare cheeks):

- ``skin``: F, minus the features below; plus skin-like P pixels just above F
  (forehead up to 0.25·fh above the oval's top, where the mesh stops);
- ``l_brow``/``r_brow``, ``l_eye``/``r_eye``, ``nose`` (convex hull of the mesh's
  nose points), ``u_lip``/``l_lip`` (between the outer and inner lip contours) and
  ``mouth`` (inside the inner contour): face-mesh landmark polygons. ``l_`` is the
  person's left (the right side of the image), as in MediaPipe;
- ``l_ear``/``r_ear``: skin-like P pixels outside F beside the face, between eye and
  nose-tip height, within 0.15·fw of the oval's side;
- ``neck``: P below the jaw corners in the neck column (``|x - cx| < 0.35·fw``) down
  to 0.35·fh under the chin with ΔE* < 36 (shadowed), plus skin-like P below the jaw
  within ``|x - cx| < 0.7·fw`` down to 0.8·fh under the chin;
- ``hair``: the rest of P outside F above eye level, plus P below eye level (down to
  1·fh under the chin, within 0.9·fw of the chin's x, outside the neck column below
  the chin) whose colour is within ΔE* 20 of the crown's median (hair above the oval's
  top); only the connected pieces that touch the crown are kept;
- ``cloth``: every other P pixel below the jaw corners; ``background``: everything else.

It never outputs ``hat``, ``eye_g``, ``ear_r`` or ``neck_l`` (the models cannot tell
them apart from hair, skin or eyes). An image without a detected face is a per-image
failure, not an exception.

>>> seg = MediapipeFaceSegmenter()  # doctest: +SKIP
>>> seg.segment_batch([read_image("portrait.jpg")])[0].shape  # doctest: +SKIP
(512, 512)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from biasaudit.core.errors import ValidationError, require
from biasaudit.core.schema import Schema, get_schema
from biasaudit.segment.base import Segmenter, SegmentFailure, SegmentOutput, register_segmenter
from biasaudit.segment.colour import rgb_to_lab

FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
             400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54,
             103, 67, 109)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_BROW = (276, 283, 282, 295, 285, 336, 296, 334, 293, 300)
RIGHT_BROW = (46, 53, 52, 65, 55, 107, 66, 105, 63, 70)
NOSE = (1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294,
        326, 327, 344, 440)
UPPER_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LOWER_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
CHIN, FOREHEAD, FACE_RIGHT_SIDE, FACE_LEFT_SIDE = 152, 10, 234, 454  # right/left: the person's
JAW_CORNERS = (172, 397)
EYE_LEVEL, NOSE_TIP = (33, 263), 1

SKIN_DELTA_E = 18.0
HAIR_DELTA_E = 20.0


class MediapipeFaceSegmenter(Segmenter):
    """Face-mesh + selfie-segmentation face parser (rules in the module docstring)."""

    name = "mediapipe-face"

    def __init__(self, *, batch_size: int = 8, min_detection_confidence: float = 0.5,
                 person_threshold: float = 0.5) -> None:
        mp = require("mediapipe", extra="face", purpose="The mediapipe-face segmenter")
        self.schema: Schema = get_schema("celebamask-hq")
        self.batch_size = batch_size
        self.person_threshold = person_threshold
        self._ids = {n: self.schema.id_of(n) for n in self.schema.names}
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, refine_landmarks=True, max_num_faces=1,
            min_detection_confidence=min_detection_confidence,
        )
        self._selfie = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)

    @property
    def fingerprint(self) -> str:
        return f"mediapipe-face|{self.schema.name}|mp0.10|p{self.person_threshold}|dE{SKIN_DELTA_E}"

    def segment_batch(self, images: Sequence[np.ndarray], prepared=None) -> list[SegmentOutput]:
        # MediaPipe's graphs take one image at a time; batching only amortises Python overhead.
        return [self._segment_one(np.ascontiguousarray(im, dtype=np.uint8)) for im in images]

    def landmarks(self, image: np.ndarray) -> np.ndarray | None:
        """(478, 2) pixel coordinates of the face mesh, or None without a face."""
        h, w = image.shape[:2]
        res = self._mesh.process(image)
        if not res.multi_face_landmarks:
            return None
        lm = res.multi_face_landmarks[0].landmark
        return np.array([(p.x * w, p.y * h) for p in lm], dtype=np.float32)

    def _segment_one(self, image: np.ndarray) -> SegmentOutput:
        import cv2

        if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 16:
            return SegmentFailure(f"expected an RGB image of at least 16×16, got shape {image.shape}")
        pts = self.landmarks(image)
        if pts is None:
            return SegmentFailure(
                "MediaPipe face mesh found no face (the mediapipe-face segmenter needs one visible "
                "face per image; use the dataset's masks or a segformer model for other images)"
            )
        h, w = image.shape[:2]
        person = self._selfie.process(image).segmentation_mask > self.person_threshold
        ids = self._ids

        def poly(index: Sequence[int]) -> np.ndarray:
            m = np.zeros((h, w), np.uint8)
            cv2.fillPoly(m, [np.round(pts[list(index)]).astype(np.int32)], 1)
            return m.astype(bool)

        def hull(index: Sequence[int]) -> np.ndarray:
            m = np.zeros((h, w), np.uint8)
            cv2.fillConvexPoly(m, cv2.convexHull(np.round(pts[list(index)]).astype(np.int32)), 1)
            return m.astype(bool)

        face = poly(FACE_OVAL)
        features = {
            "nose": hull(NOSE),
            "l_brow": poly(LEFT_BROW), "r_brow": poly(RIGHT_BROW),
            "l_eye": poly(LEFT_EYE), "r_eye": poly(RIGHT_EYE),
            "u_lip": poly(UPPER_OUTER + UPPER_INNER[::-1]),
            "l_lip": poly(LOWER_OUTER + LOWER_INNER[::-1]),
            "mouth": poly(UPPER_INNER + LOWER_INNER[::-1]),
        }
        out = np.zeros((h, w), np.uint8)
        out[face] = ids["skin"]
        for name, m in features.items():
            out[m & face] = ids[name]

        lab = rgb_to_lab(image)
        cheeks = out == ids["skin"]
        skin_lab = np.median(lab[cheeks], axis=0) if cheeks.sum() >= 20 else np.median(lab[face], axis=0)
        skin_like = np.linalg.norm(lab - skin_lab, axis=2) < SKIN_DELTA_E

        yy, xx = np.mgrid[0:h, 0:w]
        chin_x, chin_y = pts[CHIN]
        top_y = pts[FOREHEAD][1]
        fh = max(chin_y - top_y, 1.0)
        fw = max(abs(pts[FACE_LEFT_SIDE][0] - pts[FACE_RIGHT_SIDE][0]), 1.0)
        jaw_y = float(np.mean([pts[i][1] for i in JAW_CORNERS]))
        outside = person & ~face

        forehead = outside & skin_like & (yy < top_y + 0.1 * fh) & (yy >= top_y - 0.25 * fh) \
            & (np.abs(xx - pts[FOREHEAD][0]) < 0.4 * fw)
        # skin-like speckles inside the hair would otherwise be pulled into the forehead
        kernel = np.ones((5, 5), np.uint8)
        forehead = cv2.morphologyEx(forehead.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
        out[forehead] = ids["skin"]

        eye_y = float(np.mean([pts[i][1] for i in EYE_LEVEL]))
        ear_band = (yy >= eye_y) & (yy <= pts[NOSE_TIP][1]) & skin_like & outside
        for side, name in ((FACE_RIGHT_SIDE, "r_ear"), (FACE_LEFT_SIDE, "l_ear")):
            near = np.abs(xx - pts[side][0]) < 0.15 * fw
            beyond = (xx < pts[side][0] + 0.02 * fw) if name == "r_ear" else (xx > pts[side][0] - 0.02 * fw)
            out[ear_band & near & beyond & (out == 0)] = ids[name]

        delta = np.linalg.norm(lab - skin_lab, axis=2)
        free = outside & (out == 0)
        # Shadow under the chin darkens the neck, so the column right below it takes a looser ΔE.
        column = np.abs(xx - chin_x) < 0.35 * fw
        neck = free & column & (yy >= jaw_y) & (yy < chin_y + 0.35 * fh) & (delta < 2 * SKIN_DELTA_E)
        neck |= free & skin_like & (yy >= jaw_y) & (yy < chin_y + 0.8 * fh) & (np.abs(xx - chin_x) < 0.7 * fw)
        out[neck] = ids["neck"]
        free &= ~neck
        crown = free & (yy < top_y)
        hair = free & (yy < eye_y)
        if crown.sum() >= 20:
            # Below eye level only pixels with the crown's colour are hair (collars, hoods and
            # backgrounds the person mask swallowed are not).
            hair_lab = np.median(lab[crown], axis=0)
            like_hair = np.linalg.norm(lab - hair_lab, axis=2) < HAIR_DELTA_E
            hair |= free & like_hair & (yy >= eye_y) & (yy < chin_y + fh) \
                & (np.abs(xx - chin_x) < 0.9 * fw) & ((yy < chin_y) | ~column)
        if crown.any():
            # Hair is one mass hanging from the crown: drop islands that only share its colour.
            n_comp, comp = cv2.connectedComponents(hair.astype(np.uint8), connectivity=8)
            keep = np.zeros(n_comp, bool)
            keep[np.unique(comp[crown & hair])] = True
            keep[0] = False
            hair = keep[comp]
        out[hair] = ids["hair"]
        out[free & ~hair & (yy >= jaw_y)] = ids["cloth"]
        return out

    def close(self) -> None:
        for graph in (getattr(self, "_mesh", None), getattr(self, "_selfie", None)):
            if graph is not None:
                graph.close()
        self._mesh = self._selfie = None


def _make_mediapipe(arg, *, schema: Schema, device: str = "auto",
                    batch_size: int | None = None) -> MediapipeFaceSegmenter:
    if arg:
        raise ValidationError(f"--segmenter mediapipe-face takes no argument; got 'mediapipe-face:{arg}'.")
    if schema is not None and schema.name != "celebamask-hq":
        raise ValidationError(
            f"--segmenter mediapipe-face writes the 'celebamask-hq' schema, not '{schema.name}'; "
            f"use --schema celebamask-hq (or leave --schema out)."
        )
    return MediapipeFaceSegmenter(batch_size=batch_size or 8)


register_segmenter("mediapipe-face", _make_mediapipe)
