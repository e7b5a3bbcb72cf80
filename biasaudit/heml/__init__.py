"""HEML: hierarchical explainable metric learning (DESIGN.md §5; arXiv 2407.04866).

One metric-learning model per node of a segment tree (parts → pairs of parts → … →
the whole image), trained bottom-up with each parent starting from its children's
averaged weights; the metric tree of two images shows, node by node, how far apart
they are.

>>> from biasaudit.heml import HEML, default_tree
>>> default_tree("celebamask-hq").root
'image'
"""

from biasaudit.core.threads import passive_openmp

# before torch loads (the estimator imports it): OpenMP reads its wait policy only then
passive_openmp()

from biasaudit.heml.dgml import AttentiveGrouping, attention_maps, attention_mass  # noqa: E402
from biasaudit.heml.estimator import HEML, HEMLConfig, train_sample  # noqa: E402
from biasaudit.heml.inputs import NodeInputs, node_inputs, region_masks  # noqa: E402
from biasaudit.heml.losses import LOSSES, build_loss  # noqa: E402
from biasaudit.heml.metric_tree import (  # noqa: E402
    MetricTree,
    NodeDistance,
    aggregate_distance,
    explain_pair,
    node_weights,
    render_metric_tree,
    tree_distance_matrix,
)
from biasaudit.heml.persist import load_heml, save_heml  # noqa: E402
from biasaudit.heml.quality import retrieval_metrics  # noqa: E402
from biasaudit.heml.tree import NodeOptions, SegmentTree, TreeNode, default_tree, load_recipe  # noqa: E402
from biasaudit.heml.trunks import (  # noqa: E402
    NodeModel,
    average_state_dicts,
    build_node_model,
    load_efficientnet_lite0,
)

__all__ = [
    "AttentiveGrouping",
    "HEML",
    "HEMLConfig",
    "LOSSES",
    "MetricTree",
    "NodeDistance",
    "NodeInputs",
    "NodeModel",
    "NodeOptions",
    "SegmentTree",
    "TreeNode",
    "aggregate_distance",
    "attention_maps",
    "attention_mass",
    "average_state_dicts",
    "build_loss",
    "build_node_model",
    "default_tree",
    "explain_pair",
    "load_efficientnet_lite0",
    "load_heml",
    "load_recipe",
    "node_inputs",
    "node_weights",
    "region_masks",
    "render_metric_tree",
    "retrieval_metrics",
    "save_heml",
    "train_sample",
    "tree_distance_matrix",
]
