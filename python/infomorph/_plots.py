"""Plots of the network layer share one way to get matplotlib: the non-interactive Agg backend,
or None where matplotlib is not installed (plots are optional; results are the JSON files)."""
from __future__ import annotations


def pyplot():
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save(fig, path: str) -> str:
    """Lay out, write as PNG (100 dpi), close; returns the path."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
