"""The histogram of channel importances that ``leangen compress`` writes after condensation."""
from __future__ import annotations

from pathlib import Path

import torch


def histogram(scores: list[torch.Tensor], path: str | Path, threshold: float | None = None,
              title: str = "channel importance") -> Path:
    """Plot the distribution of channel importances (log x axis, zeros at the left edge) to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    values = torch.cat(scores).numpy()
    floor = 1e-6
    bins = np.logspace(np.log10(floor), np.log10(max(float(values.max()), floor * 10)), 40)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(np.clip(values, floor, None), bins=bins, color="tab:blue")
    ax.set_xscale("log")
    ax.set_xlabel("||(γ, β)|| per channel (values < 1e-6 drawn at 1e-6)")
    ax.set_ylabel("channels")
    zero = int((values < floor).sum())
    ax.set_title(f"{title}: {zero}/{values.size} channels at zero")
    if threshold:
        ax.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:g}")
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
