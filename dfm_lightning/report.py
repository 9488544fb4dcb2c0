"""``dfm report``: the paper's tables for one or more chains, from their ``results.json`` files.

Table 1 (accuracy per generation, the paper's row beside a chain whose setting the paper ran), Table 2 (accuracy
under L2-PGD per eps) and Table 4 (cross-evaluation, one per ``crosseval.json`` in the run dirs), as markdown,
CSV and LaTeX, plus one comparison plot. Chains that differ only in ``seed_everything`` are one row: mean +- half
the range over the seeds, with the number of seeds.
"""
import csv
import io
import json
from pathlib import Path

from dfm_lightning.chain import science
from dfm_lightning.data.extracted import atomic_write_bytes, read_json
from dfm_lightning.errors import UserError
from dfm_lightning.evaluation.crosseval import short_name
from dfm_lightning.evaluation.figures import save_comparison_plot

# Table 1 of the paper (accuracy %, M0..M5), keyed by (dataset, M0 architecture, adversarially trained M0)
PAPER_TABLE1 = {
    ("mnist", "lenet", False): [99.5, 98.5, 96.6, 91.5, 87.4, 76.5],
    ("mnist", "lenet", True): [98.7, 97.7, 96.1, 95.2, 94.2, 93.7],
    ("cifar10", "vgg8", False): [92.2, 89.4, 80.1, 66.8, 52.5, 27.5],
    ("cifar10", "vgg8", True): [87.0, 88.1, 82.5, 71.7, 58.7, 44.8],
}


def load_chain(path: str | Path) -> dict:
    """A chain's results: ``path`` is a run dir or a results.json file."""
    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    if not file.exists():
        raise UserError(f"{path} holds no results.json; pass a chain's run dir (after at least M0) or its results.json")
    res = read_json(file, {"generations": list, "config": dict}, "nothing: it is rewritten when the chain is rerun")
    if not res["generations"]:
        raise UserError(f"{file} holds no finished generation yet; rerun its chain first")
    name = path.name if path.is_dir() else file.stem
    return {"name": name, "dir": path if path.is_dir() else None, **res, "config": _normalized(res["config"])}


def _normalized(config: dict) -> dict:
    """A chain's config under today's option names (results written before the CLI took its form, commit 63f4284
    and earlier, say ``m0`` and ``seed``)."""
    c = dict(config)
    if "m0" in c:
        model = dict(c.pop("m0"))
        c["m0_ckpt_path"] = model.pop("ckpt_path", None)
        c["model"] = model
    if "seed" in c:
        c["seed_everything"] = c.pop("seed")
    return c


def paper_setting(config: dict) -> tuple | None:
    """The paper's Table 1 key of a chain, or None (a handed-over M0's training is not known)."""
    if config.get("m0_ckpt_path"):
        return None
    model = config.get("model") or {}
    family = str(model.get("arch", "")).split("_")[0]  # lenet_wide is a LeNet-5 with wider layers
    key = ((config.get("data") or {}).get("name"), family, (model.get("adv_eps") or 0) > 0)
    return key if key in PAPER_TABLE1 else None


def group_seeds(chains: list[dict]) -> list[list[dict]]:
    """Chains with equal settings apart from the seed, in the order first given."""
    groups: dict[str, list[dict]] = {}
    for c in chains:
        key = json.dumps({k: v for k, v in science(c["config"]).items() if k != "seed_everything"}, sort_keys=True)
        groups.setdefault(key, []).append(c)
    return list(groups.values())


def _cell(values: list[float], digits: int = 2) -> str:
    if not values:
        return ""
    mean = sum(values) / len(values)
    return f"{mean:.{digits}f}" if len(values) == 1 else f"{mean:.{digits}f} ± {(max(values) - min(values)) / 2:.{digits}f}"


def _label(group: list[dict]) -> str:
    seeds = sorted(c["config"].get("seed_everything", 0) for c in group)
    return group[0]["name"] + (f" (seeds {', '.join(map(str, seeds))})" if len(group) > 1 else "")


def _column(group: list[dict], g: int, value) -> list[float]:
    return [100 * value(c["generations"][g]) for c in group if len(c["generations"]) > g and value(c["generations"][g]) is not None]


def tables(chains: list[dict]) -> dict[str, list[list[str]]]:
    """Table 1 and Table 2 as rows of cells (first row = header)."""
    groups = group_seeds(chains)
    n = max(len(c["generations"]) for c in chains)
    gens = [f"M{g}" for g in range(n)]
    t1, shown = [["chain", *gens]], set()
    for group in groups:
        key = paper_setting(group[0]["config"])
        if key is not None and key not in shown:  # the paper's row above the first chain of its setting
            shown.add(key)
            paper = [f"{v:.1f}" for v in PAPER_TABLE1[key][:n]]
            t1.append([f"paper: {key[0]} {key[1]}{', robust M0' if key[2] else ''}", *paper, *[""] * (n - len(paper))])
        t1.append([_label(group), *[_cell(_column(group, g, lambda r: r["test_accuracy"])) for g in range(n)]])
    t2 = [["chain", "eps", *gens]]
    for group in groups:
        eps = list(group[0]["generations"][0]["robust_accuracy"])
        images = group[0]["generations"][0].get("robust_num_images")
        for e in eps:
            label = _label(group) + (f" ({images} test images)" if images else "")
            t2.append([label, e, *[_cell(_column(group, g, lambda r, e=e: r["robust_accuracy"].get(e)))
                                   for g in range(n)]])
    return {"table1": t1, "table2": t2}


def crosseval_tables(chains: list[dict]) -> dict[str, tuple[str, list[list[str]]]]:
    """Table 4 for every crosseval.json in the given run dirs: {key: (whose, rows)}. Those at the same place in
    chains that differ only in the seed are one table, pooled like the other tables (names from the first seed)."""
    out = {}
    for group in group_seeds(chains):
        found: dict[str, list[tuple[dict, dict]]] = {}  # place in the run dir -> [(chain, its crosseval)]
        for c in group:
            for f in sorted(c["dir"].rglob("crosseval.json")) if c["dir"] else []:
                found.setdefault(str(f.relative_to(c["dir"])), []).append(
                    (c, read_json(f, {"datasets": list, "checkpoints": list, "accuracy": list}, "it (rerun dfm crosseval)")))
        for k, pairs in enumerate(found.values()):
            first = pairs[0][1]
            pairs = [(c, r) for c, r in pairs if (len(r["datasets"]), len(r["checkpoints"]))
                     == (len(first["datasets"]), len(first["checkpoints"]))]
            src = first.get("source") or []
            rows = [["model \\ data", *[short_name(d) for d in first["datasets"]]]]
            for i, ckpt in enumerate(first["checkpoints"]):
                rows.append([short_name(ckpt), *[_cell([100 * r["accuracy"][i][j] for _, r in pairs], 1)
                                                 + ("*" if j < len(src) and src[j] == i else "")
                                                 for j in range(len(first["datasets"]))]])
            out[f"table4-{group[0]['name']}" + (f"-{k + 1}" if k else "")] = (_label([c for c, _ in pairs]), rows)
    return {"table4": next(iter(out.values()))} if len(out) == 1 else out  # the common case: table4.md


def markdown(rows: list[list[str]]) -> str:
    head, *body = rows
    return "\n".join(["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1),
                      *["| " + " | ".join(r) + " |" for r in body]]) + "\n"


def csv_text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


def latex(rows: list[list[str]]) -> str:
    head, *body = rows
    esc = lambda s: str(s).replace("±", r"$\pm$").replace("_", r"\_").replace("%", r"\%")  # noqa: E731
    lines = [r"\begin{tabular}{l" + "r" * (len(head) - 1) + "}", r"\toprule", " & ".join(map(esc, head)) + r" \\",
             r"\midrule", *[" & ".join(map(esc, r)) + r" \\" for r in body], r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def report(run_dirs: list[str], out_dir: str | None = None) -> str:
    """Write the tables (``.md``, ``.csv``, ``.tex``), ``report.md`` and ``accuracy.png`` to ``out_dir`` (if given);
    return the markdown report."""
    if not run_dirs:
        raise UserError("dfm report needs at least one run dir or results.json")
    chains = [load_chain(p) for p in run_dirs]
    t = tables(chains)
    titles = {"table1": "Table 1: accuracy per generation (%)",
              "table2": "Table 2: accuracy under L2-PGD (%), per eps"}
    for key, (whose, rows) in crosseval_tables(chains).items():
        t[key] = rows
        titles[key] = (f"Table 4: cross-evaluation of {whose} (accuracy %, labels = argmax of the stored logits; "
                       "* = the model the data was extracted from)")
    text = "\n".join(f"## {titles[k]}\n\n{markdown(rows)}" for k, rows in t.items())
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for k, rows in t.items():
            for ext, render in (("md", markdown), ("csv", csv_text), ("tex", latex)):
                atomic_write_bytes(out / f"{k}.{ext}", render(rows).encode())
        curves = {_label(group): [[100 * r["test_accuracy"] for r in c["generations"]] for c in group]
                  for group in group_seeds(chains)}
        keys = {paper_setting(c["config"]) for c in chains} - {None}
        paper = PAPER_TABLE1[keys.pop()] if len(keys) == 1 else None
        save_comparison_plot(curves, out / "accuracy.png", "test accuracy per generation", paper=paper)
        text += "\n![accuracy per generation](accuracy.png)\n"
        atomic_write_bytes(out / "report.md", text.encode())
    return text
