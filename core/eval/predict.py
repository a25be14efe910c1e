"""Run a model over a patch dataset: probabilities and embeddings for the whole set."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..models.mosaic import MosaicModel


@torch.no_grad()
def predict(
    model: MosaicModel,
    dataset: torch.utils.data.Dataset,
    modalities: Sequence[str] = ("s2", "s1"),
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """``{'probs': [N,K], 'embeddings': [N,D], 'labels': [N,K]}`` over the whole dataset."""
    model = model.to(device).eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    probs, embs, labels = [], [], []
    for batch in loader:
        inputs = {m: batch[m].to(device) for m in modalities}
        out = model(inputs.get("s2"), inputs.get("s1"))
        probs.append(torch.sigmoid(out["logits"].float()).cpu())
        embs.append(model.embedding(out["feat"]).float().cpu())
        labels.append(batch["label"])
    return {
        "probs": torch.cat(probs).numpy(),
        "embeddings": torch.cat(embs).numpy(),
        "labels": torch.cat(labels).numpy(),
    }
