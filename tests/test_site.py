"""The static leaderboard: pages, links, HTML basics, methods registry, and a real-browser walk-through."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import pytest
from leaderboard_helpers import add_budget_twin, raw_cards, results_root

from actbench.errors import InvalidConfig
from actbench.leaderboard import build_site, load_methods_info

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
METHODS_INFO = [
    {"name": "ibp", "title": "Interval bound propagation",
     "citation": {"authors": "Gowal et al.", "venue": "ICCV", "year": 2019, "link": "https://arxiv.org/abs/1810.12715"},
     "description": "Train on interval bounds."},
]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return results_root(tmp_path_factory.mktemp("site-results"))


@pytest.fixture(scope="module")
def site(results: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    index = build_site(results, out, METHODS_INFO)
    assert index == out / "index.html"
    return out


class _Page(HTMLParser):
    """Collects what the checks need: links, images, ids, the html lang and the charset."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.lang: str | None = None
        self.charset = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        if tag == "meta" and a.get("charset", "").lower() == "utf-8":
            self.charset = True
        if tag == "img":
            self.images.append(a)
        for key in ("href", "src"):
            if a.get(key):
                self.refs.append(a[key])


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    return page


def test_pages_exist_for_every_track_and_run(site: Path, results: Path) -> None:
    cards = raw_cards(results)
    tracks = {c["track"]["name"] for c in cards}
    for track in tracks:
        assert (site / "tracks" / f"{track}.html").is_file()
        assert (site / "tracks" / track / "pareto.svg").is_file()
    assert len(list((site / "runs").glob("*/*.html"))) == len(cards)
    assert (site / "methods.html").is_file() and (site / "static" / "sort.js").is_file()
    index = (site / "index.html").read_text()
    assert all(f"tracks/{t}.html" in index for t in tracks)


def test_every_relative_link_exists(site: Path) -> None:
    pages = list(site.rglob("*.html"))
    assert pages
    for page in pages:
        for ref in _parse(page).refs:
            url = urlparse(ref)
            if url.scheme in ("http", "https", "mailto"):
                continue
            assert not url.scheme and not ref.startswith("/"), f"{page}: non-relative link {ref}"
            if not url.path:
                continue
            assert (page.parent / url.path).resolve().is_file(), f"{page}: broken link {ref}"


def test_html_basics(site: Path) -> None:
    for page in site.rglob("*.html"):
        text = page.read_text()
        parsed = _parse(page)
        assert text.startswith("<!DOCTYPE html>"), page
        assert parsed.lang == "en" and parsed.charset, page
        for image in parsed.images:
            assert image.get("alt"), f"{page}: image without alt text"
        assert "http://" not in text.replace("http://www.w3.org", "") or "cdn" not in text.lower()


def test_track_page_content(site: Path, results: Path) -> None:
    card = raw_cards(results)[0]
    page = (site / "tracks" / f"{card['track']['name']}.html").read_text()
    assert "Robustness at a level of clean accuracy" in page
    assert "clean<br>≥ 50%" in page and "±" in page
    assert page.count('class="sortable') >= 3
    run_page = next((site / "runs" / card["track"]["name"]).glob(f"{card['run_id']}.html")).read_text()
    assert "Reproduce" in run_page
    assert json.dumps(card["command"])[1:-1].replace('"', "&#34;") in run_page or card["command"] in run_page


def test_methods_page_shows_citations(site: Path) -> None:
    page = (site / "methods.html").read_text()
    assert "Gowal et al." in page and "https://arxiv.org/abs/1810.12715" in page


def test_methods_info_from_registry_files(tmp_path: Path) -> None:
    (tmp_path / "methods").mkdir()
    (tmp_path / "baselines").mkdir()
    (tmp_path / "methods" / "adaptive.toml").write_text(
        'name = "adaptive"\ntitle = "ACERT"\ndescription = "Adaptive radii."\n[citation]\n'
        'authors = "Nurlanov, Schmidt, Bernard"\nvenue = "ECML-PKDD"\nyear = 2024\n'
        'link = "https://arxiv.org/abs/2307.13078"\n[defaults]\nkappa = 0.0\n'
    )
    (tmp_path / "baselines" / "broken.toml").write_text("name = [")
    (tmp_path / "baselines" / "sabr.toml").write_text('name = "sabr"\ntitle = "SABR"\n')
    info = load_methods_info([tmp_path / "methods", tmp_path / "baselines", tmp_path / "missing"])
    assert [m["name"] for m in info] == ["adaptive", "sabr"]
    assert info[0]["citation"]["year"] == "2024" and info[0]["description"] == "Adaptive radii."
    assert info[1]["citation"]["authors"] == ""
    out = build_site(tmp_path / "results", tmp_path / "site", info)
    assert "Nurlanov, Schmidt, Bernard" in (out.parent / "methods.html").read_text()


def test_empty_results_give_a_no_runs_page(tmp_path: Path) -> None:
    index = build_site(tmp_path / "nothing-here", tmp_path / "site", [])
    text = index.read_text()
    assert "No runs yet" in text and "no complete runs" in text
    assert not (tmp_path / "site" / "tracks").exists() or not any((tmp_path / "site" / "tracks").iterdir())


def test_corrupt_card_is_listed_and_site_still_builds(results: Path, tmp_path: Path) -> None:
    card = raw_cards(results)[0]
    track = card["track"]["name"]
    copy = tmp_path / "results"
    shutil.copytree(results / track / card["run_id"], copy / track / card["run_id"])  # one good run is enough
    (copy / track / "half-written").mkdir()
    (copy / track / "half-written" / "card.json").write_text('{"schema": 1, "run_')
    index = build_site(copy, tmp_path / "site", [])
    text = index.read_text()
    assert "1 run card skipped" in text and "half-written" in text


def test_rebuild_and_refuse_foreign_folder(tmp_path: Path) -> None:
    out = tmp_path / "site"
    build_site(tmp_path / "results", out, [])
    build_site(tmp_path / "results", out, [])  # a previous site is rebuilt in place
    foreign = tmp_path / "docs"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InvalidConfig, match="not an actbench site"):
        build_site(tmp_path / "results", foreign, [])
    assert (foreign / "notes.txt").read_text() == "keep me"


def _launch(playwright):  # noqa: ANN001, ANN202 - playwright types are optional
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def _column_values(page, table: str, column: int) -> list[str]:  # noqa: ANN001
    return page.eval_on_selector_all(
        f"{table} tbody tr", f"rows => rows.map(r => r.cells[{column}].getAttribute('data-value'))"
    )


@pytest.mark.slow
def test_site_in_a_real_browser(site: Path) -> None:
    if not CHROMIUM.is_file():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (make setup installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make setup)")
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"failed {r.url}"))

            def images_loaded() -> bool:
                page.wait_for_load_state("load")
                return page.evaluate(
                    "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
                )

            page.goto((site / "index.html").as_uri())
            assert "leaderboard" in page.title()
            page.click("table.tracks tbody a")
            page.wait_for_url("**/tracks/*.html")
            assert images_loaded()
            assert page.locator("img").count() >= 1
            track_url = page.url

            # click a header of the configurations table: rows reorder by that column
            column = page.locator("table.configs thead th").all_inner_texts().index("clean\n%")
            before = _column_values(page, "table.configs", column)
            page.click(f"table.configs thead th:nth-child({column + 1}) button")
            ascending = _column_values(page, "table.configs", column)
            assert [float(v) for v in ascending] == sorted(float(v) for v in before)
            page.click(f"table.configs thead th:nth-child({column + 1}) button")
            descending = _column_values(page, "table.configs", column)
            assert [float(v) for v in descending] == sorted((float(v) for v in before), reverse=True)
            if len(set(before)) > 1:
                assert ascending != descending
            assert page.get_attribute(f"table.configs thead th:nth-child({column + 1})", "aria-sort") == "descending"
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "track.png"), full_page=True)

            page.click("table.runs tbody a")
            page.wait_for_url("**/runs/*/*.html")
            assert images_loaded()
            assert page.locator("pre.command").inner_text().startswith("actbench")
            page.goto(track_url)
            page.click("header nav a[href$='methods.html']")
            page.wait_for_url("**/methods.html")
        finally:
            browser.close()
    assert errors == []


def test_runs_given_another_budget_get_their_own_configuration_row(results: Path, tmp_path: Path) -> None:
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    card = add_budget_twin(copy, "propagations", 1.5e6)
    build_site(copy, tmp_path / "site", METHODS_INFO)
    page = (tmp_path / "site" / "tracks" / f"{card['track']['name']}.html").read_text()
    assert "propagations=1.5e+06" in page and ">budget<" in page
