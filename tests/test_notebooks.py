"""notebooks/*.ipynb: committed without outputs, executed top to bottom with nbclient, outputs checked.

A cell error fails the test (nbclient raises CellExecutionError). Each notebook
is executed once, in one test, so pytest-xdist never runs it twice. The checks
compare what the notebooks show with truth read here independently (the
phantoms' truth.json, the acquisition settings the lab notebook sets).

CPU time (kernel and batch workers, 2-core machine): quickstart ~10 s, cohort ~30 s, phantom lab ~40 s;
under heavy load from other processes the wall time was 2.5 times that.
"""

from __future__ import annotations

import json
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("ipywidgets")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SAMPLE_DATA = ROOT / "sample_data"
WIDGET = "application/vnd.jupyter.widget-view+json"
LABELS = {"normal": "normal", "toh": "toh_like", "avn": "avn_like", "sif": "sif_like"}


def _read(name):
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def _execute(name):
    nb = _read(name)
    client = nbclient.NotebookClient(nb, timeout=600, startup_timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    return nb


def _tagged(nb, tag):
    (cell,) = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    return cell


def _data(cell, mime):
    return [o["data"][mime] for o in cell.outputs if mime in o.get("data", {})]


def _stream(cell):
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


class _Table(HTMLParser):
    """The first HTML table of a pandas ``_repr_html_``: header rows and body rows of cell texts."""

    def __init__(self):
        super().__init__()
        self.head, self.body, self.rows, self._cell, self._depth = [], [], None, None, 0

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._depth += 1
        elif tag in ("thead", "tbody") and self._depth == 1:
            self.rows = self.head if tag == "thead" else self.body
        elif tag == "tr" and self._depth == 1:
            self.rows.append([])
        elif tag in ("td", "th") and self._depth == 1:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._depth -= 1
        elif tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _frame(html):
    """``{column: [values]}`` and the row index of a DataFrame's HTML (single-level header and index)."""
    parser = _Table()
    parser.feed(html)
    header, body = parser.head[0], parser.body
    assert body and all(len(r) == len(header) for r in body)
    columns = {name: [r[i] for r in body] for i, name in enumerate(header) if name}
    return columns, [r[0] for r in body]


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert all(c.outputs == [] and c.execution_count is None for c in code), f"{path.name}: clear the outputs"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.cells[0].cell_type == "markdown"  # opens with its narrative


def test_the_three_notebooks_exist():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == [
        "01_quickstart.ipynb", "02_cohort.ipynb", "03_phantom_lab.ipynb"]


@pytest.mark.slow
def test_quickstart_runs_and_shows_the_evidence():
    nb = _execute("01_quickstart.ipynb")
    truth = json.loads((SAMPLE_DATA / "case02_toh_right" / "truth" / "truth.json").read_text())

    # the analysis card names the true pattern of each hip (TOH right, normal left in this sample)
    card = "".join(_data(_tagged(nb, "analysis"), "text/plain"))
    for side in ("right", "left"):
        assert f"{side}: {LABELS[truth['sides'][side]['pattern']]}" in card

    evidence = _tagged(nb, "evidence")
    assert "research use only" in _stream(evidence)
    columns, _ = _frame(_data(evidence, "text/html")[0])
    assert {"feature", "value", "threshold", "favours", "weight", "met", "source"} <= set(columns)
    assert len(columns["feature"]) >= 5
    assert set(columns["favours"]) <= set(LABELS.values())
    assert "toh_like" in columns["favours"]

    # the score recomputed from the evidence table equals the report's, for every label
    (recompute,) = [c for c in nb.cells if c.cell_type == "code" and "recomputed" in c.source]
    columns, labels = _frame(_data(recompute, "text/html")[0])
    assert sorted(labels) == sorted(LABELS.values())
    assert columns["recomputed"] == columns["report"]

    # viewers are widgets in a kernel; the static figure is a PNG
    views = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("view(")]
    assert len(views) == 2 and all(_data(c, WIDGET) for c in views)
    assert _data(_tagged(nb, "static-figure"), "image/png")


@pytest.mark.slow
def test_cohort_confusion_matrix_counts_every_true_hip():
    nb = _execute("02_cohort.ipynb")
    # truth, independently: the four samples' truth.json plus the two studies the notebook simulates
    true = Counter()
    for path in SAMPLE_DATA.glob("case*/truth/truth.json"):
        true.update(s["pattern"] for s in json.loads(path.read_text())["sides"].values())
    true.update(["sif", "toh", "toh", "sif"])  # case05_sif_toh, case06_toh_sif (right, left)

    cell = _tagged(nb, "confusion-matrix")
    columns, index = _frame(_data(cell, "text/html")[0])
    assert index == [*LABELS.values(), "All"]
    assert [int(v) for v in columns["All"][:-1]] == [true[p] for p in LABELS]
    assert int(columns["All"][-1]) == sum(true.values()) == 12
    measured = [c for c in columns if c not in ("measured", "All")]  # "measured": the columns' name
    for r in range(len(LABELS)):  # each row's cells add up to that pattern's hips: every hip placed once
        assert sum(int(columns[c][r]) for c in measured) == true[list(LABELS)[r]]

    text = "".join(_stream(c) for c in nb.cells if c.cell_type == "code")
    assert "6 studies analysed, 0 failed" in text
    assert "second run: 6 of 6 studies skipped as finished" in text
    assert sum(len(_data(c, "image/png")) for c in nb.cells if c.cell_type == "code") == 2


@pytest.mark.slow
def test_phantom_lab_covers_every_factor_and_the_qc_sees_the_physics():
    nb = _execute("03_phantom_lab.ipynb")
    cell = _tagged(nb, "lab-table")
    columns, _ = _frame(_data(cell, "text/html")[0])
    assert set(columns["factor"]) == {"baseline", "SNR", "coil bias", "fat suppression", "slice thickness",
                                      "obliquity"}
    assert len(columns["setting"]) == 2 * len(set(columns["setting"]))  # both hips of every variation

    def per_setting(column):
        return {s: float(v) for s, v, side in zip(columns["setting"], columns[column], columns["side"])
                if side == "right"}

    # the QC's SNR in muscle follows the SNR the phantom was simulated with (mean muscle signal / noise sigma)
    snr = per_setting("snr_measured")
    assert snr["baseline"] == pytest.approx(20.0, rel=0.15)
    assert snr["SNR 8"] == pytest.approx(8.0, rel=0.15)
    # less efficient fat saturation leaves more fat signal: fat / muscle rises monotonically
    fat = per_setting("fat_to_muscle")
    assert fat["baseline"] < fat["fat-sat 0.5"] < fat["fat-sat 0.2"]
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert sum(len(_data(c, "image/png")) for c in code) == 5  # four variations shown, one summary plot
