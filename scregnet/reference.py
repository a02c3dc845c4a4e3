"""Published numbers (TFs+500, cell-type-specific ChIP-seq, GENELink split; AUROC, AUPRC).

From Kommu et al. 2025 (scRegNet w/ Geneformer) and docs/evaluation.md (label_count).
"""

SCREGNET_GENEFORMER = {
    "hESC": (0.89, 0.62),
    "hHEP": (0.90, 0.84),
    "mDC": (0.81, 0.17),
    "mESC": (0.93, 0.86),
    "mHSC-E": (0.92, 0.94),
    "mHSC-GM": (0.93, 0.94),
    "mHSC-L": (0.88, 0.88),
}
LABEL_COUNT_PUBLISHED = {
    "hESC": (0.878, 0.601),
    "hHEP": (0.899, 0.833),
    "mDC": (0.812, 0.173),
    "mESC": (0.923, 0.849),
    "mHSC-E": (0.912, 0.930),
    "mHSC-GM": (0.914, 0.919),
    "mHSC-L": (0.860, 0.857),
}


def cell_type(dataset: str) -> str:
    """`mHSC-GM/TFs500` -> `mHSC-GM`."""
    return dataset.split("/")[0]
