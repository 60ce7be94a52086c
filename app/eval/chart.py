"""`callbot eval --png`: false barge-ins by category and recall by version, one bar per system."""

from __future__ import annotations

from pathlib import Path


def draw(report: dict, path: Path) -> None:
    """Two panels side by side; needs matplotlib (a callbot dependency), drawn without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = report["systems"]
    names = list(systems)
    cats = sorted({c for s in systems.values() for c in s["false_by_category"]})
    versions = report["versions"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        s = systems[name]
        left.bar([i + k * width for i in range(len(cats))], [s["false_by_category"].get(c, 0) for c in cats],
                 width, label=name)
        right.bar([i + k * width for i in range(len(versions))],
                  [s["recall_by_version"].get(v, {}).get("recall") or 0 for v in versions], width, label=name)
    left.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(cats))], cats)
    left.set_title("false barge-ins by category")
    right.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(versions))], versions)
    right.set_ylim(0.5, 1.0)
    right.set_title("recall, speech >= 1.7 s")
    right.legend(loc="lower right")
    fig.suptitle(f'{report["directory"]}: {report["fixtures"]} fixtures')
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
