"""The static leaderboard: pages, links and downloads, what the tables and plots hold, published reference
points, protocols, verification status, and a real-browser walk-through (search, filters, sorting, width)."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest
from leaderboard_helpers import add_budget_twin, raw_cards, results_root
from site_helpers import enriched_results, literature_dir

from actbench.compare import default_protocol, runs_table, threshold_table, track_info
from actbench.config import list_tracks
from actbench.errors import ActbenchError, InvalidConfig
from actbench.leaderboard import build_site, load_methods_info
from actbench.leaderboard.literature import NOTICE
from actbench.store import load_cards

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TRACK = "fashion-mnist"
METHODS_INFO = [
    {"name": "ibp", "title": "Interval bound propagation",
     "citation": {"authors": "Gowal et al.", "title": "On the effectiveness of interval bound propagation",
                  "venue": "ICCV", "year": 2019, "link": "https://arxiv.org/abs/1810.12715"},
     "description": "Train on interval bounds."},
]


@pytest.fixture(scope="module")
def enriched(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return enriched_results(tmp_path_factory.mktemp("site-results"))


@pytest.fixture(scope="module")
def site(enriched: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("site")
    out = tmp / "site"
    index = build_site(enriched["root"], out, METHODS_INFO, literature_dir=literature_dir(tmp))
    assert index == out / "index.html"
    return out


class _Page(HTMLParser):
    """Collects what the checks need: links, images, scripts, ids, the html lang and the charset."""

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


def _table_rows(page: str, name: str) -> list[str]:
    """The body rows (HTML) of the table with class ``name``."""
    match = re.search(rf'<table class="dt {name}".*?<tbody>(.*?)</tbody>', page, re.S)
    assert match, f"no table {name}"
    return re.findall(r"<tr>(.*?)</tr>", match.group(1), re.S)


def _headers(page: str, name: str) -> list[str]:
    match = re.search(rf'<table class="dt {name}".*?<thead>(.*?)</thead>', page, re.S)
    assert match, f"no table {name}"
    return [re.sub(r"<[^>]+>", " ", h).split() for h in re.findall(r"<th[^>]*>(.*?)</th>", match.group(1), re.S)]


def test_pages_exist_for_every_track_and_run(site: Path, enriched: dict) -> None:
    index = load_cards(enriched["root"])
    for track in set(list_tracks()) | set(index.frame["track"]):
        assert (site / "tracks" / f"{track}.html").is_file()
    runs = index.frame[index.frame["status"] == "complete"].drop_duplicates("path")
    assert {p.stem for p in (site / "runs" / TRACK).glob("*.html")} == set(runs["run_id"])
    for name in ("front-acr", "front-cert", "certified", "hypervolume", "status"):
        assert (site / "tracks" / TRACK / f"{name}.svg").is_file()
    assert (site / "static" / "vendor" / "datatables" / "dataTables.min.js").is_file()
    assert (site / "static" / "vendor" / "datatables" / "LICENSE.txt").is_file()
    assert not (site / "static" / "sort.js").exists()


def test_index_lists_every_registered_track_with_its_status(site: Path) -> None:
    page = (site / "index.html").read_text()
    for track in list_tracks():
        assert f'href="tracks/{track}.html"' in page
    rows = re.findall(r"<tr>(.*?)</tr>", page.split("<tbody>")[1], re.S)
    status = {re.search(r'href="tracks/([^"]+)\.html"', r).group(1): r for r in rows}
    assert re.search(r"<strong>\d+</strong> runs", status[TRACK])
    for track in set(list_tracks()) - {TRACK}:
        assert "none yet" in status[track] and f"--dataset {track}" in status[track]
        track_page = (site / "tracks" / f"{track}.html").read_text()
        assert "Runs: none yet" in track_page and f"actbench sweep --dataset {track}" in track_page


def test_every_relative_link_exists(site: Path) -> None:
    pages = list(site.rglob("*.html"))
    assert len(pages) > 10
    for page in pages:
        for ref in _parse(page).refs:
            url = urlparse(ref)
            if url.scheme in ("http", "https", "mailto"):
                continue
            assert not url.scheme and not ref.startswith("/"), f"{page}: non-relative link {ref}"
            if not url.path:
                continue
            assert (page.parent / unquote(url.path)).resolve().is_file(), f"{page}: broken link {ref}"


def test_html_basics_and_nothing_from_the_network(site: Path) -> None:
    for page in site.rglob("*.html"):
        text = page.read_text()
        parsed = _parse(page)
        assert text.startswith("<!DOCTYPE html>"), page
        assert parsed.lang == "en" and parsed.charset, page
        for image in parsed.images:
            assert image.get("alt"), f"{page}: image without alt text"
        for tag in re.findall(r"<(?:script|link|img)\b[^>]*>", text):
            assert "://" not in tag, f"{page}: asset from the network: {tag}"
    for css in (site / "static").rglob("*.css"):
        assert not re.search(r"url\((?!['\"]?data:)", css.read_text()), f"{css} loads a file or font"


def test_configurations_table_says_preset_samples_and_protocol(site: Path, enriched: dict) -> None:
    frame = load_cards(enriched["root"]).frame
    info = track_info(frame, TRACK)
    page = (site / "tracks" / f"{TRACK}.html").read_text()
    headers = [" ".join(h) for h in _headers(page, "configs")]
    for name in ("preset", "budget", "samples", "protocol", "epochs", "seconds"):
        assert name in headers
    rows = _table_rows(page, "configs")
    assert len(rows) == len(runs_table(frame, TRACK))
    protocol = headers.index("protocol")
    for row in rows:
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        assert info.protocol in cells[protocol]
    assert 'data-filters="' in page and 'data-dt="full"' in page


def test_thresholds_come_from_the_data_and_the_takeaway_names_the_best(site: Path, enriched: dict) -> None:
    frame = load_cards(enriched["root"]).frame
    info = track_info(frame, TRACK)
    page = (site / "tracks" / f"{TRACK}.html").read_text()
    taus = [float(t) / 100 for t in re.findall(r'<span class="l">≥ ([\d.]+)%</span>', page)]
    taus = sorted(set(taus))
    assert taus and taus != [0.5, 0.6, 0.7, 0.8, 0.9]
    configs = runs_table(frame, TRACK)
    configs = configs[configs["budget"] == configs["budget"].mode()[0]]
    robust = configs[configs[f"cert_best@{info.headline:g}_mean"] > 0]["clean_accuracy_mean"]
    spread = robust if len(robust) else configs["clean_accuracy_mean"]  # nothing certifies: every configuration
    assert min(taus) >= spread.min() - 0.01 and max(taus) <= spread.max()
    table = threshold_table(frame, TRACK, taus)
    match = re.search(r'<p class="takeaway">(.*?)</p>', page, re.S)
    assert match, "no takeaway"
    text = match.group(1)
    if table["best_cert"].max() > 0:
        strict = table[table["threshold"] == max(taus)].sort_values("best_cert", ascending=False).iloc[0]
        assert f"≥ {100 * max(taus):g} %" in text and f"{100 * strict['best_cert']:.1f} %" in text
        assert str(strict["method"]) in text and str(strict["best_cert_config"]) in text
    else:  # the short fixture runs certify nothing at the headline eps: the takeaway says so, never "0.0 % by"
        top = configs.sort_values("acr_best_mean", ascending=False).iloc[0]
        assert text.startswith("No configuration certifies") and f"by {top['method']} ({top['config_label']}" in text
    assert info.protocol in page


def test_track_downloads_hold_the_tables(site: Path, enriched: dict) -> None:
    frame = load_cards(enriched["root"]).frame
    folder = site / "tracks" / TRACK
    configs = pd.read_csv(folder / "configurations.csv")
    expected = runs_table(frame, TRACK)
    assert list(configs["config"]) == list(expected["config"])
    assert configs["clean_accuracy_mean"].tolist() == pytest.approx(expected["clean_accuracy_mean"].tolist())
    assert set(configs["protocol"]) == {default_protocol(frame, TRACK)}
    records = json.loads((folder / "runs.json").read_text())
    track_rows = frame[frame["track"] == TRACK]
    assert len(records) == len(track_rows) and {r["protocol"] for r in records} == set(track_rows["protocol"])
    assert all("path" not in r for r in records)  # no local paths in the published tables
    assert len(pd.read_csv(folder / "runs.csv")) == len(records)
    page = (site / "tracks" / f"{TRACK}.html").read_text()
    for name in ("configurations.csv", "configurations.json", "runs.csv", "runs.json"):
        assert f'href="{TRACK}/{name}" download' in page


def test_run_downloads_are_the_run_folder_files(site: Path, enriched: dict) -> None:
    run = enriched["model_run"]
    target = site / "runs" / TRACK / run.name
    for name in ("card.json", "history.csv", "radii.parquet", "model.pt", enriched["float32"]["radii"]):
        assert (target / name).read_bytes() == (run / name).read_bytes(), name
    page = (site / "runs" / TRACK / f"{run.name}.html").read_text()
    for name in ("card.json", "history.csv", "radii.parquet", "model.pt"):
        assert f'href="{run.name}/{name}" download' in page
    external = enriched["external"]
    assert (site / "runs" / TRACK / external.name / "model.onnx").read_bytes() == b"onnx-bytes"


def test_literature_points_are_shown_apart_and_never_ranked(site: Path, enriched: dict) -> None:
    page = (site / "tracks" / f"{TRACK}.html").read_text()
    rows = _table_rows(page, "literature")
    assert len(rows) == 2 and NOTICE in page
    assert "MN-BaB" in rows[1] and "1000 s per sample" in rows[1] and 'href="https://example.org/paper-a"' in rows[1]
    assert "not stated" in rows[0]  # paper B gives no clean accuracy
    for svg in ("front-cert.svg", "certified.svg"):
        assert NOTICE in (site / "tracks" / TRACK / svg).read_text()
    assert NOTICE not in (site / "tracks" / TRACK / "front-acr.svg").read_text()  # no published ACR
    ranked = (site / "tracks" / TRACK / "configurations.csv").read_text()
    assert "paper method" not in ranked
    for table in ("configs", "runs", "hypervolume", "thresholds-acr", "thresholds-cert"):
        assert not any("paper method" in r for r in _table_rows(page, table))


def test_bad_literature_file_fails_before_anything_is_written(enriched: dict, tmp_path: Path) -> None:
    folder = tmp_path / "literature"
    folder.mkdir()
    (folder / f"{TRACK}.toml").write_text('[[point]]\nmethod = "x"\ncertified_accuracy = 62\n')
    with pytest.raises(InvalidConfig, match="missing"):
        build_site(enriched["root"], tmp_path / "site", [], literature_dir=folder)
    assert not (tmp_path / "site").exists()


def test_committed_literature_files_name_source_verifier_and_time_limit() -> None:
    from actbench.leaderboard.literature import load_literature

    for track in list_tracks():
        for point in load_literature(track):
            assert point.verifier and point.time_limit and point.source and point.link.startswith("https://")
            assert 0 < point.certified_accuracy < 1


def test_other_protocols_are_listed_apart_and_marked(site: Path, enriched: dict) -> None:
    page = (site / "tracks" / f"{TRACK}.html").read_text()
    pid = enriched["float32"]["protocol"]["id"]
    records = _table_rows(page, "records")
    assert sum(pid in r for r in records) == 1 and "not sound" in page
    assert f"Configurations under protocol {pid}" in page
    configs = " ".join(_table_rows(page, "configs"))
    assert pid not in configs  # the default protocol's table never mixes in another protocol
    run_page = (site / "runs" / TRACK / f"{enriched['float32_run'].name}.html").read_text()
    assert pid in run_page and run_page.count("<tr>") > 3


def test_verification_status_uses_complete_counts_when_present(site: Path, enriched: dict) -> None:
    page = (site / "tracks" / f"{TRACK}.html").read_text()
    complete = [r for r in _table_rows(page, "status") if "complete: bab" in r]
    assert len(complete) == 1
    cells = re.findall(r'data-order="([^"]*)"', complete[0])
    assert [float(c) for c in cells[3:6]] == pytest.approx([0.6, 0.3, 0.1])
    others = [r for r in _table_rows(page, "status") if "PGD attack" in r]
    for row in others:
        shares = [float(c) for c in re.findall(r'data-order="([^"]*)"', row)[3:6]]
        assert sum(shares) == pytest.approx(1.0)
    run_page = (site / "runs" / TRACK / f"{enriched['complete_run'].name}.html").read_text()
    assert "complete: bab, 60 s per sample" in run_page


def test_tuning_and_external_sections(site: Path, enriched: dict) -> None:
    page = (site / "tracks" / f"{TRACK}.html").read_text()
    assert "study s1 (40 trials)" in " ".join(_table_rows(page, "configs"))
    assert "study s1, 40 trials" in " ".join(_table_rows(page, "hypervolume"))
    tuned = (site / "runs" / TRACK / f"{enriched['tuned'][0].name}.html").read_text()
    assert "From study <strong>s1</strong>, trial 3 of 40" in tuned
    external = (site / "runs" / TRACK / f"{enriched['external'].name}.html").read_text()
    assert "ab" * 32 in external and "claimed clean_accuracy" in external and "measured here" in external
    assert '<span class="badge">external</span>' in " ".join(_table_rows(page, "runs"))


def test_citations_are_links_on_method_and_run_pages(site: Path, enriched: dict) -> None:
    methods = (site / "methods.html").read_text()
    assert "Gowal et al." in methods and '<a href="https://arxiv.org/abs/1810.12715"' in methods
    card = json.loads((enriched["model_run"] / "card.json").read_text())
    run_page = (site / "runs" / TRACK / f"{enriched['model_run'].name}.html").read_text()
    citation = card["method"].get("citation") or {}
    if citation.get("link"):
        assert f'href="{citation["link"]}"' in run_page
    assert "authors = " not in run_page and "link = " not in run_page
    assert 'href="../../methods.html#method-adaptive"' in run_page


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
    assert not (tmp_path / "site" / "runs").exists() or not any((tmp_path / "site" / "runs").rglob("*.html"))
    for track in list_tracks():
        assert "Runs: none yet" in (tmp_path / "site" / "tracks" / f"{track}.html").read_text()


def test_corrupt_card_is_listed_and_site_still_builds(tmp_path: Path) -> None:
    results = results_root(tmp_path / "base")
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
    with pytest.raises(ActbenchError, match="not an actbench site"):
        build_site(tmp_path / "results", foreign, [])
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_a_failed_build_leaves_the_previous_site_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from actbench.leaderboard import plots

    results = results_root(tmp_path / "base")
    out = tmp_path / "site"
    build_site(results, out, [])
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(plots, "history_plot", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        build_site(results, out, [])
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not list(tmp_path.glob(".actbench-site-*"))  # no staging folder left behind


def test_runs_given_another_budget_get_their_own_configuration_row(tmp_path: Path) -> None:
    copy = tmp_path / "results"
    shutil.copytree(results_root(tmp_path / "base"), copy)
    card = add_budget_twin(copy, "propagations", 1.5e6)
    build_site(copy, tmp_path / "site", METHODS_INFO)
    page = (tmp_path / "site" / "tracks" / f"{card['track']['name']}.html").read_text()
    assert "propagations=<wbr>1.5e+06" in page
    budget = [" ".join(h) for h in _headers(page, "configs")].index("budget")
    filters = re.search(r'<table class="dt configs"[^>]*data-filters="([^"]+)"', page)[1]
    assert str(budget) in filters.split(",")  # two budgets: the budget column gets a filter


# --- the real browser -----------------------------------------------------------------------------------


def _launch(playwright):  # noqa: ANN001, ANN202 - playwright types are optional
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def _visible_values(table, column: int) -> list[str]:  # noqa: ANN001 - a playwright Locator
    """``data-order`` of the ``column``-th cell of each row shown."""
    return table.evaluate(f"t => Array.from(t.tBodies[0].rows).map(r => r.cells[{column}].dataset.order)")


def _wait_for_sort(page, header, direction: str) -> None:  # noqa: ANN001 - playwright Page and Locator
    """Wait until DataTables has redrawn the table sorted by ``header`` in ``direction`` (a click is handled
    asynchronously: reading the rows at once, or clicking again during the redraw, races it)."""
    page.wait_for_function("([h, d]) => h.getAttribute('aria-sort') === d", arg=[header.element_handle(), direction],
                           timeout=10_000)  # fmt: skip


def _check_page(page, url: str, site: Path, errors: list[str]) -> None:  # noqa: ANN001
    """Load ``url``: no console error, every image decoded, every relative link a file, no horizontal scroll."""
    page.goto(url)
    page.wait_for_load_state("load")
    assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"), url
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{url}: page is {widths[0]} px wide at {widths[1]} px"
    overflow = page.evaluate("Array.from(document.querySelectorAll('.table-wrap, .dt-container'))"
                             ".filter(w => w.scrollWidth > w.clientWidth + 1).length")
    assert overflow == 0, f"{url}: {overflow} table(s) wider than the page"
    for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)"):
        parsed = urlparse(href)
        if parsed.scheme == "file":
            assert Path(unquote(parsed.path)).is_file(), f"{url}: link {href} does not resolve"
    assert errors == [], f"{url}: {errors}"


@pytest.mark.slow
def test_site_in_a_real_browser(site: Path) -> None:
    if not CHROMIUM.is_file():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (make setup installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make setup)")
    errors: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = _launch(p)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"failed {r.url}"))
            for path in sorted(site.rglob("*.html")):
                _check_page(page, path.as_uri(), site, errors)
            page.goto((site / "index.html").as_uri())
            page.screenshot(path=str(ARTIFACTS / "index.png"), full_page=True)
            page.click(f"table.tracks a[href='tracks/{TRACK}.html']")
            page.wait_for_url(f"**/tracks/{TRACK}.html")

            box = page.locator("div.dt-container:has(table.configs)").first  # the track protocol's table
            configs = box.locator("table.configs")
            total = configs.locator("tbody tr").count()
            assert total > 2
            # typing in the search box filters the rows
            search = box.locator("input[type=search]")
            search.fill("adaptive")
            shown = configs.locator("tbody tr").all_inner_texts()
            assert 0 < len(shown) < total and all("adaptive" in row for row in shown)
            search.fill("")
            assert configs.locator("tbody tr").count() == total
            # a column filter keeps exactly one method
            select = box.locator("select[aria-label='filter by method']")
            select.select_option("ibp")
            methods = configs.evaluate("t => Array.from(t.tBodies[0].rows).map(r => r.cells[1].dataset.search)")
            assert methods and set(methods) == {"ibp"}
            select.select_option("")
            # sorting orders a numeric column, both ways
            headers = [t.split("\n")[0].strip() for t in configs.locator("thead th").all_inner_texts()]
            column = headers.index("clean")
            header = configs.locator("thead th").nth(column)
            before = [float(v) for v in _visible_values(configs, column)]
            header.click()
            _wait_for_sort(page, header, "ascending")
            ascending = [float(v) for v in _visible_values(configs, column)]
            assert ascending == sorted(before)
            header.click()
            _wait_for_sort(page, header, "descending")
            descending = [float(v) for v in _visible_values(configs, column)]
            assert descending == sorted(before, reverse=True)
            assert header.get_attribute("aria-sort") == "descending"
            page.screenshot(path=str(ARTIFACTS / "track.png"), full_page=True)
            # the Columns button shows a hidden column
            count = configs.locator("thead th").count()
            box.locator("button:has-text('Columns')").click()
            page.locator(".dt-button-collection button:has-text('ACR IBP')").click()
            assert configs.locator("thead th").count() == count + 1
            page.keyboard.press("Escape")
            # the CSV button exports the rows shown
            with page.expect_download() as download:
                box.locator("button:has-text('CSV')").click()
            lines = Path(download.value.path()).read_text().strip().splitlines()
            assert len(lines) == total + 1 and "method" in lines[0]
            assert any(" ± " in line for line in lines[1:])  # a mean with its std, as the cell reads
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # it scrolls in its box

            page.locator("table.runs tbody a").first.click()
            page.wait_for_url("**/runs/*/*.html")
            assert page.locator("pre.command").inner_text().startswith("actbench")
            page.screenshot(path=str(ARTIFACTS / "run.png"), full_page=True)
            page.goto((site / "methods.html").as_uri())
            page.screenshot(path=str(ARTIFACTS / "methods.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
