"""HEML: hierarchical explainable metric learning (DESIGN.md §5; arXiv 2407.04866).

One metric-learning model per node of a segment tree (parts → pairs of parts → … →
the whole image), trained bottom-up with each parent starting from its children's
averaged weights; the metric tree of two images shows, node by node, how far apart
they are.

>>> from biasaudit.heml import HEML, default_tree
>>> default_tree("celebamask-hq").root
'image'
"""

from biasaudit.heml.estimator import HEML, HEMLConfig
from biasaudit.heml.inputs import NodeInputs, node_inputs
from biasaudit.heml.losses import LOSSES, build_loss
from biasaudit.heml.metric_tree import MetricTree, NodeDistance, explain_pair, render_metric_tree
from biasaudit.heml.persist import load_heml, save_heml
from biasaudit.heml.quality import retrieval_metrics
from biasaudit.heml.tree import NodeOptions, SegmentTree, TreeNode, default_tree, load_recipe
from biasaudit.heml.trunks import (
    NodeModel,
    average_state_dicts,
    build_node_model,
    load_efficientnet_lite0,
)

__all__ = [
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
    "average_state_dicts",
    "build_loss",
    "build_node_model",
    "default_tree",
    "explain_pair",
    "load_efficientnet_lite0",
    "load_heml",
    "load_recipe",
    "node_inputs",
    "render_metric_tree",
    "retrieval_metrics",
    "save_heml",
]
