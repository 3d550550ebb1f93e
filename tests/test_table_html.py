"""The periodic table as an HTML page: built from the registry, self-contained, and working in a real browser.

The browser test drives the system Chromium (Debian's ``chromium``) with Playwright; it is skipped, with
the reason, where either is missing. CI (``.ci/run``) installs both, so there it runs.
"""

import json
import os
import re
import shutil
from html.parser import HTMLParser

import pytest

from icontorch import methods
from icontorch.cli import main
from icontorch.table import COLORS
from icontorch.table_html import LABEL_COLUMNS, html_page, method_records, write_html

CHROMIUM = os.environ.get("ICONTORCH_CHROMIUM", "/usr/bin/chromium")
# CI sets this: there a missing browser is a failure, not a skip
REQUIRE_BROWSER = os.environ.get("ICONTORCH_REQUIRE_BROWSER") == "1"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text of the JSON data block."""

    def __init__(self):
        super().__init__()
        self.tags, self.data, self._in_data = [], "", False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_data = dict(attrs).get("id") == "icon-data"

    def handle_endtag(self, tag):
        self._in_data = False

    def handle_data(self, data):
        if self._in_data:
            self.data += data


@pytest.fixture(scope="module")
def page():
    text = html_page()
    parser = _Tags()
    parser.feed(text)
    return text, parser


def test_every_registered_method_is_one_tile_in_its_cell(page):
    _, parser = page
    tiles = [a for tag, a in parser.tags if "tile" in a.get("class", "").split()]
    assert sorted(a["data-name"] for a in tiles) == sorted(methods.available())
    assert len(tiles) == len(methods.available()) >= 49
    for a in tiles:
        info = methods.info(a["data-name"])
        assert a["data-area"] == info.area and f"--c:{COLORS[info.area]}" in a["style"]
        assert a["data-labels"] == ("yes" if info.column in LABEL_COLUMNS else "no")
    cells = [a for tag, a in parser.tags if "cell" in a.get("class", "").split()]
    assert len(cells) == len(methods.ROWS) * len(methods.COLUMNS)


def test_the_data_block_is_the_registry(page):
    _, parser = page
    data = json.loads(parser.data)
    assert list(data) == methods.available()
    for name, record in data.items():
        info = methods.info(name)
        assert (record["p"], record["q"], record["theorem"], record["test"], record["gap"]) == \
            (info.p, info.q, info.theorem, info.test, info.gap)
        assert record["code"].splitlines()[1].startswith(f"loss = ic.methods.{name}(")
        assert record["divergence"]
    assert data["simclr"]["divergence"] == "cross_entropy" and data["tsne"]["divergence"] == "kl"
    assert data["kmeans"]["divergence"] == "reverse_kl(entropy_weight=1.0)"
    assert data["iic"]["divergence"].startswith("none")
    assert data["simclr"]["reference"] == ""                  # the standalone page links nowhere


def test_the_site_page_links_each_method_to_its_reference():
    parser = _Tags()
    parser.feed(html_page(reference="reference/methods/"))
    data = json.loads(parser.data)
    assert data["t_supcon"]["reference"] == "reference/methods/#icontorch.methods.t_supcon"


def test_code_lines_build_the_method():
    for record in method_records():
        build = record["code"].splitlines()[1]
        if re.search(r"\((\w+)(,|\))", build):       # a required argument: shown by name only
            continue
        namespace = {}
        exec("\n".join(record["code"].splitlines()[:2]), namespace)
        assert namespace["loss"] is not None, record["name"]


def test_page_needs_no_network(page):
    text, parser = page
    for tag, attrs in parser.tags:
        assert "src" not in attrs and tag not in ("link", "iframe", "img"), (tag, attrs)
        assert not attrs.get("href", "").startswith(("http", "//")), attrs
    assert "@import" not in text and "url(" not in text


def test_cli_writes_the_page_atomically(tmp_path, capsys):
    out = tmp_path / "table.html"
    out.write_text("old")
    assert main(["table", "--html", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert out.read_text(encoding="utf-8") == html_page()
    assert sorted(os.listdir(tmp_path)) == ["table.html"]


@pytest.mark.parametrize("path, message", [("table.txt", "--html must end in .html or .htm"),
                                           ("missing/table.html", "--html must be in an existing folder")])
def test_cli_rejects_bad_paths(tmp_path, capsys, path, message):
    assert main(["table", "--html", str(tmp_path / path)]) == 2
    assert message in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_write_html_checks_its_path(tmp_path):
    from icontorch import IConError

    with pytest.raises(IConError, match="path must end in .html"):
        write_html(str(tmp_path / "t.png"))


def _browser():
    missing = (pytest.fail if REQUIRE_BROWSER else pytest.skip)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright package is not installed (pip install playwright, or the docs extra)")
    if not shutil.which(CHROMIUM):
        missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    return sync_playwright


def test_page_in_a_real_browser(tmp_path):
    sync_playwright = _browser()
    path = write_html(str(tmp_path / "table.html"))
    errors = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            view = browser.new_page(viewport={"width": 1600, "height": 1100})
            view.on("pageerror", lambda error: errors.append(str(error)))
            view.on("request", lambda request: errors.append("request " + request.url)
                    if not request.url.startswith(("file:", "data:", "about:")) else None)
            view.goto(f"file://{path}")
            tiles = view.locator(".tile")
            assert tiles.count() == len(methods.available())
            for k in range(tiles.count()):            # every tile is drawn, with a size, on the page
                box = tiles.nth(k).bounding_box()
                assert box is not None and box["width"] > 40 and box["height"] > 20, k
            assert view.locator(".cell.empty").count() == periodic_empty_cells()

            view.click('.tile[data-name="t_supcon"]')
            panel = view.locator("#details")
            assert panel.get_attribute("data-method") == "t_supcon"
            info = methods.info("t_supcon")
            assert panel.locator('dd[data-field="p(j|i)"]').inner_text() == info.p
            assert panel.locator('dd[data-field="proved by"]').inner_text() == info.test
            assert "ic.methods.t_supcon(dof=1.0)" in panel.locator("pre.code").inner_text()
            assert "(new)" in panel.locator("h2").inner_text()
            view.screenshot(path=str(tmp_path / "table.png"), full_page=True)

            view.click('.tile[data-name="cross_entropy"]')      # another click replaces the details
            assert panel.locator('dd[data-field="theorem"]').inner_text() == "Thm 9"

            view.check('input[name="labels"][value="yes"]')    # the filter dims what needs no labels
            dim = {t.get_attribute("data-name") for t in view.locator(".tile.dim").all()}
            assert dim == {n for n in methods.available() if methods.info(n).column not in LABEL_COLUMNS}
            view.check('input[name="labels"][value="all"]')
            view.click('label.chip:has(input[value="GAP"])')   # family filter: hide the gaps
            dim = {t.get_attribute("data-name") for t in view.locator(".tile.dim").all()}
            assert dim == {n for n in methods.available() if methods.info(n).gap}
        finally:
            browser.close()
    assert errors == []
    assert (tmp_path / "table.png").stat().st_size > 10_000


def periodic_empty_cells():
    from icontorch.table import periodic_table

    return periodic_table().counts()["empty"]
