"""The ``masks`` segmenter reads every public layout the dataset layer supports."""

from __future__ import annotations

import pytest

from biasaudit.data import open_dataset, read_mask
from biasaudit.data import testing as fake
from biasaudit.segment import load_part_map, segment_dataset


@pytest.mark.parametrize(
    "writer",
    [fake.write_celebamask_hq, fake.write_lip, fake.write_sceneparse150, fake.write_ade20k_full, fake.write_ccp],
)
def test_masks_segmenter_covers_each_layout(writer, tmp_path):
    root = writer(tmp_path / "data")
    ds = open_dataset(root)
    result = segment_dataset(root, tmp_path / "ws", segmenter="masks")
    assert result.n_failed == 0 and result.n_ok == len(ds.samples) > 0
    assert len(result.segments) == result.n_ok * len(ds.schema.part_names)
    # the statistics are the masks' own pixel counts
    sample = ds.samples[0]
    truth = read_mask(sample, ds.schema)
    rows = result.segments[result.segments.image == sample.image_id].set_index("class_id")
    for class_id in ds.schema.ids[1:]:
        assert rows.loc[class_id, "n_pixels"] == int((truth == class_id).sum())
    assert (load_part_map(tmp_path / "ws", sample.image_id) == truth).all()
