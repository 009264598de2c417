"""report.html and diff.html opened in headless Chromium (Debian's chromium, which `make
test` installs): every plot must have been laid out and drawn by a real browser, not only be
present in the text.

The page itself has no script. The test appends one to a copy: on load it measures every
`<svg data-plot>` (its laid-out box, the length of its lines, the count of its bars and
markers) into a `<pre id="render-check">`, and `chromium --dump-dom` prints the DOM after
the load event, with that element in it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from backtest.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# `make test` sets BACKTEST_REQUIRE_CHROMIUM=1 after installing chromium: there a missing
# browser is a failure, not a skip.
if CHROMIUM is None and os.environ.get("BACKTEST_REQUIRE_CHROMIUM") == "1":
    raise RuntimeError("chromium not found but BACKTEST_REQUIRE_CHROMIUM=1 (make test installs it)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")

CHECK = """<script>
window.addEventListener("load", () => {
  const plots = [];
  for (const svg of document.querySelectorAll("svg[data-plot]")) {
    const box = svg.getBoundingClientRect();
    let length = 0;
    for (const line of svg.querySelectorAll("polyline")) length += line.getTotalLength();
    const shapes = [...svg.querySelectorAll("rect, circle")].filter(s => {
      const b = s.getBBox(); return b.width > 0 && b.height > 0; }).length;
    plots.push({plot: svg.dataset.plot, width: box.width, height: box.height,
                line_length: length, shapes: shapes, text: svg.textContent});
  }
  const pre = document.createElement("pre");
  pre.id = "render-check";
  pre.textContent = JSON.stringify(plots);
  document.body.appendChild(pre);
});
</script>"""


def rendered(page: Path, tmp_path: Path) -> list[dict]:
    """The render check of `page` as Chromium laid it out."""
    probe = tmp_path / f"probe-{page.name}"
    probe.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    profile = tmp_path / "chromium-profile"
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--window-size=900,3000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="render-check">(.*?)</pre>', result.stdout, re.S)
    assert found, f"no render check in chromium's DOM (exit {result.returncode}): {result.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    """A small crash day replayed with the default rules (A) and examples/strict.toml (B)."""
    root = tmp_path_factory.mktemp("chromium")
    day = root / "day"
    assert main(["generate", "crash-day", str(day), "--n", "150000", "--accounts", "1500", "--seed", "3"]) == 0
    strict = Path(__file__).resolve().parents[2] / "examples" / "strict.toml"
    assert main(["run", str(day), "--out", str(root / "a")]) == 0
    assert main(["run", str(day), "--out", str(root / "b"), "--rules", str(strict)]) == 0
    assert main(["diff", str(root / "a"), str(root / "b"), "--out", str(root / "diff.html")]) == 0
    return day, root / "a", root / "b", root / "diff.html"


def test_every_plot_of_the_report_is_laid_out_and_drawn_by_chromium(runs, tmp_path):
    _, run_a, _, _ = runs
    plots = rendered(run_a / "report.html", tmp_path)
    names = [p["plot"] for p in plots]
    assert names == ["mark", "depth", "fund", "liquidations_count", "liquidations_notional",
                     "slippage", "adl", "losers"]
    for p in plots:
        assert p["width"] >= 700 and p["height"] >= 200, p
        # A line of some length, or bars and markers with an area: something was drawn.
        assert p["line_length"] > 100 or p["shapes"] > 0, p
    by_name = {p["plot"]: p for p in plots}
    assert by_name["mark"]["shapes"] > 0  # liquidation markers on the mark line
    assert by_name["liquidations_count"]["shapes"] > 0 and by_name["losers"]["shapes"] > 0


def test_the_diff_page_overlays_both_runs_and_chromium_draws_every_plot(runs, tmp_path):
    _, _, _, diff = runs
    plots = rendered(diff, tmp_path)
    assert [p["plot"] for p in plots] == ["fund", "liquidations_count", "adl", "depth"]
    for p in plots:
        assert p["width"] >= 700 and p["line_length"] > 200, p
        assert "A: a" in p["text"] and "B: b" in p["text"], p  # the legend names both runs
    page = diff.read_text()
    assert "<script" not in page and "<link" not in page  # self-contained, like the report
