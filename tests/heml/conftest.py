from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from heml_fixtures import TREE, make_faces  # noqa: E402

from biasaudit.heml import HEML, load_recipe  # noqa: E402


@pytest.fixture(autouse=True, scope="package")
def _one_torch_thread():
    # On a shared 2-core box two OpenMP threads spin against other jobs and run up to 10×
    # slower; one thread keeps these tests fast and their timing stable.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="package")
def faces():
    return make_faces(96)


@pytest.fixture(scope="package")
def fitted(faces, _one_torch_thread):
    """A HEML fitted once on the tiny faces (3 leaves, 2 internal nodes, ~1 s)."""
    images, maps, y = faces
    return HEML(tree=load_recipe(TREE), device="cpu", seed=0).fit(images, maps, y)
