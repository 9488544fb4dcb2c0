"""notebooks/explore_results.ipynb runs headless against a real run directory (the tiny chain) and shows what it says."""
import pytest
from conftest import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


def test_notebook_runs_on_a_chain_and_reads_results_data_and_checkpoints(tiny_chain, monkeypatch):
    monkeypatch.setenv("DFM_RUN", str(tiny_chain))
    nb = nbformat.read(REPO / "notebooks" / "explore_results.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()  # raises on an error
    texts = [str(o.get("text", "")) + str(o.get("data", {}).get("text/markdown", ""))
             for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    joined = "\n".join(texts)
    assert "| chain | M0 | M1 | M2 |" in joined  # Table 1 of the tiny chain
    assert "1500 samples" in joined and "(memory-mapped: memmap)" in joined
    assert "M0 agrees with D1's stored labels on 100.0%" in joined  # M0 labelled D1
    assert sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs) >= 3


def test_notebook_without_a_run_says_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.setenv("DFM_RUN", str(tmp_path / "none"))
    nb = nbformat.read(REPO / "notebooks" / "explore_results.ipynb", as_version=4)
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="dfm chain --config configs/quickstart.yaml"):
        nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
