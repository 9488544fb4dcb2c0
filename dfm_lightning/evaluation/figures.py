"""Pictures people would rather look at than read: the paper's Figure 2 grid and accuracy per generation."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def save_extraction_grid(substitutes: torch.Tensor, extracted: torch.Tensor, logits: torch.Tensor, path: str | Path,
                         title: str = "", class_names: list[str] | None = None) -> Path:
    """Two rows like the paper's Figure 2: substitute originals x_s above the extracted x', each x' labelled below
    with the class the model gives it (argmax Z(x'), by name when ``class_names`` are given)."""
    n = len(extracted)
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 3.2), squeeze=False)
    for i in range(n):
        for row, img in enumerate((substitutes[i], extracted[i])):
            ax = axes[row, i]
            ax.imshow(img.permute(1, 2, 0).squeeze(-1).clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        label = int(logits[i].argmax())
        axes[1, i].set_xlabel(class_names[label] if class_names else str(label), fontsize=9)
    axes[0, 0].set_ylabel("x_s")
    axes[1, 0].set_ylabel("x'")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _accuracy_axes(ax, generations: range) -> None:
    ax.set_xlabel("generation (M0 = origin data)")
    ax.set_ylabel("origin test accuracy (%)")
    ax.set_xticks(generations)
    ax.grid(alpha=0.3)


def _save(fig, ax, path: str | Path, title: str, legend_size: int) -> Path:
    ax.legend(fontsize=legend_size)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def save_accuracy_plot(generations: list[dict], path: str | Path, title: str = "") -> Path:
    """Test accuracy (and accuracy under each robustness eps) per generation, in percent."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    gens = [g["generation"] for g in generations]
    ax.plot(gens, [100 * g["test_accuracy"] for g in generations], "o-", label="clean", linewidth=2)
    for eps in generations[0].get("robust_accuracy", {}):
        if float(eps) > 0:
            ax.plot(gens, [100 * g["robust_accuracy"][eps] for g in generations], ".--", label=f"L2 eps={eps}")
    _accuracy_axes(ax, gens)
    ax.set_ylim(0, 100)
    return _save(fig, ax, path, title, legend_size=8)


def save_comparison_plot(chains: dict[str, list[list[float]]], path: str | Path, title: str = "",
                         paper: list[float] | None = None) -> Path:
    """Clean test accuracy (%) per generation for several chains (label -> one list of M0, M1, ... per seed): the
    mean over seeds, the range between them shaded, the paper's figures dashed."""
    fig, ax = plt.subplots(figsize=(6, 4))
    colors = plt.get_cmap("tab20" if len(chains) > 10 else "tab10")
    for k, (label, seeds) in enumerate(chains.items()):
        n = max(len(s) for s in seeds)
        at = [[s[g] for s in seeds if len(s) > g] for g in range(n)]
        ax.plot(range(n), [sum(v) / len(v) for v in at], "o-", label=label, color=colors(k))
        if len(seeds) > 1:
            ax.fill_between(range(n), [min(v) for v in at], [max(v) for v in at], color=colors(k), alpha=0.2)
    if paper:
        ax.plot(range(len(paper)), paper, "k--", label="paper")
    _accuracy_axes(ax, range(max(len(s) for s in [*(s for v in chains.values() for s in v), paper or []])))
    return _save(fig, ax, path, title, legend_size=7)
