"""Audit: attributes per part, finders, multiple-testing control, severity and ranking."""

from biasaudit.audit.attributes import Cluster, build_attributes, mask_attributes
from biasaudit.audit.confounding import (
    hidden_presence,
    mask_contacts,
    node_confounding,
    occlusion_confounding,
    workspace_occlusion,
)
from biasaudit.audit.findings import Finding, findings_document
from biasaudit.audit.inputs import AuditInputs, Target
from biasaudit.audit.run import AuditResult, run_audit

__all__ = [
    "AuditInputs",
    "AuditResult",
    "Cluster",
    "Finding",
    "Target",
    "build_attributes",
    "findings_document",
    "hidden_presence",
    "mask_attributes",
    "mask_contacts",
    "node_confounding",
    "occlusion_confounding",
    "run_audit",
    "workspace_occlusion",
]
