"""The built book in a real browser: headless Chromium (Debian's ``/usr/bin/chromium``)
driven by PyPI's ``playwright``, offline (every http(s) request is refused), over every
page of one build (the session fixture ``built_book`` in conftest.py).

On every page: every <img> loads; no JavaScript error (but the theme's known one); no
Markdown table left as raw pipe text; the math is rendered (MathJax is served locally); no frozen progress bar or other ipywidgets control
(blank offline, frozen online: the static book has no kernel); no placeholder text; and
the page with its images stays under 6 MB. Every kernel-free interactive figure
(``smallunet.book.plotting.interactive``) changes what it draws when its slider moves,
shows the value it is at beside the slider (and that value changes with it), has step
buttons and no Play/Loop controls, and shows its panels at least as large as it asks
(chapter 9's samples: 56 px); the book has at least six of them. Readable at the suite's 1280-px window (issue 21):
no cell output that is only ``True`` or ``False``; no printed line wider than its output
box; every output figure, slider frames included, shown at >= 85 % of the width it was
drawn at; no display equation wider than the column. Skips only when playwright or
chromium is missing.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from chromium_setup import ALLOWED_ERRORS, ARGS, CHROMIUM, require_browser  # noqa: E402

sync_api = require_browser()
MAX_PAGE_BYTES = 6_000_000
MIN_SHOWN_SHARE = 0.85   # a figure shown smaller than this share of its drawn width has text under ~9 px
MIN_INTERACTIVE = 6
PLACEHOLDERS = re.compile(r"\bTODO\b|\bFIXME\b|\bTBD\b|\bXXX\b|lorem ipsum|<Figure size \d|<IPython\.core\.display"
                          r"|<matplotlib\.\w+|Loading widget|Error rendering output", re.IGNORECASE)
# the separator row of a GFM table (|---|---:| or --- | ---) outside code: a table left as
# text (a paragraph joins its lines, so the row need not stand on a line of its own, and
# Sphinx's smartquotes turn --- into an em dash)
_DASHES = r"\s*:?(?:-{3,}|[\u2013\u2014]+-?):?\s*"
PIPE_TABLE = re.compile(rf"\|{_DASHES}\||{_DASHES}\|{_DASHES}\|")
PROGRESS_TEXT = re.compile(r"\d+%\|[^\n]*\||\d+/\d+ \[\d+:\d+|[\d?.]+ ?(it|step|s)/s\]")
PROGRESS_MODELS = ("FloatProgressModel", "IntProgressModel")

# what a page shows, outside code cells' sources: prose and outputs
VISIBLE_TEXT = """() => {
  const main = (document.querySelector('main') || document.body).cloneNode(true);
  main.querySelectorAll('.cell_input, script, style, noscript').forEach(e => e.remove());
  return main.innerText;
}"""
PROSE_TEXT = """() => {
  const main = (document.querySelector('main') || document.body).cloneNode(true);
  main.querySelectorAll('pre, code, .highlight, .cell_input, script, style, noscript').forEach(e => e.remove());
  return main.innerText;
}"""
BROKEN_IMAGES = """async () => {
  const imgs = [...document.images];
  imgs.forEach(i => { i.loading = 'eager'; });
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(done => {
    i.addEventListener('load', done); i.addEventListener('error', done); setTimeout(done, 5000); })));
  return imgs.filter(i => !(i.complete && i.naturalWidth > 0))
             .map(i => (i.getAttribute('src') || i.outerHTML).slice(0, 120));
}"""
MATH = """async () => {
  const expected = document.querySelectorAll('main span.math, main div.math').length;
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const rendered = () => document.querySelectorAll('main mjx-container').length;
  const t0 = Date.now();   // the MathJax script loads deferred: wait for it to exist, then to finish
  while (expected && !(window.MathJax && MathJax.startup && MathJax.startup.promise) && Date.now() - t0 < 15000)
    await sleep(50);
  if (expected && window.MathJax && MathJax.startup && MathJax.startup.promise) {
    try { await MathJax.startup.promise; } catch (e) {} }
  while (expected && rendered() < expected && Date.now() - t0 < 15000) await sleep(50);
  return {expected: expected, rendered: rendered()};
}"""
# every widget view on the page, as the model names of it and all its children
# (a tqdm bar is an HBox holding an HTML label and a FloatProgress)
WIDGETS = """() => {
  const state = document.querySelector('script[type="application/vnd.jupyter.widget-state+json"]');
  const models = state ? JSON.parse(state.textContent).state : {};
  const names = (id, seen) => {
    if (seen.has(id)) return [];
    seen.add(id);
    const m = models[id];
    if (!m) return ['unknown widget'];
    const kids = (m.state && m.state.children) || [];
    return [m.model_name].concat(...kids.map(k => names(String(k).replace('IPY_MODEL_', ''), seen)));
  };
  return [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')]
    .map(s => names(JSON.parse(s.textContent).model_id, new Set()));
}"""


# what a reader at 1280 px cannot read, measured after the images have loaded and MathJax
# has typeset (BROKEN_IMAGES and MATH run first). Each finding names its cell (0-based
# among the page's code cells) and the first line of that cell's source.
READABILITY = """(minShare) => {
  const cells = [...document.querySelectorAll('main .cell')];
  const where = e => {
    const c = e.closest('.cell');
    const src = c && c.querySelector('.cell_input');
    const first = src ? (src.innerText.split('\\n').find(l => l.trim()) || '') : '';
    return {cell: c ? cells.indexOf(c) : -1, source: first.trim().slice(0, 70)};
  };
  const bare = [...document.querySelectorAll('main .cell_output .output')]
    .filter(o => /^(True|False)$/.test(o.innerText.trim()))
    .map(o => Object.assign(where(o), {text: o.innerText.trim()}));
  const wide = [...document.querySelectorAll('main .cell_output pre')]
    .filter(p => p.scrollWidth > p.clientWidth + 1)
    .map(p => {
      const lines = p.innerText.split('\\n');
      const longest = lines.reduce((a, b) => b.length > a.length ? b : a, '');
      return Object.assign(where(p), {scroll: p.scrollWidth, client: p.clientWidth,
                                      chars: longest.length, longest: longest.slice(0, 100)});
    });
  const figures = [...document.querySelectorAll('main .cell_output img')]
    .filter(i => i.naturalWidth > 0 && i.getClientRects().length > 0)   // loaded, and laid out (not in a closed toggle)
    .map(i => {
      const drawn = i.getAttribute('width') ? parseFloat(i.getAttribute('width')) : i.naturalWidth;
      const shown = i.getBoundingClientRect().width;
      return Object.assign(where(i), {drawn: Math.round(drawn), shown: Math.round(shown),
                                      share: +(shown / drawn).toFixed(3), slider: !!i.closest('div.animation')});
    })
    .filter(f => f.share < minShare);
  const seen = new Set();   // an equation's div.math and its mjx-container are one finding
  const equations = [...document.querySelectorAll('main div.math, main mjx-container[display="true"]')]
    .filter(m => m.scrollWidth > m.clientWidth + 1)
    .filter(m => { const key = m.closest('div.math') || m; const fresh = !seen.has(key); seen.add(key); return fresh; })
    .map(m => ({scroll: m.scrollWidth, client: m.clientWidth, tex: m.textContent.trim().slice(0, 80)}));
  return {bare, wide, figures, equations};
}"""


def pages(html: Path) -> list[Path]:
    """Every built page, except redirects (index.html is a meta refresh to the intro,
    which is checked itself: evaluating a page while it navigates away is a race)."""
    return sorted(p for p in html.rglob("*.html") if not {"_static", "_sources"} & set(p.relative_to(html).parts)
                  and 'http-equiv="Refresh"' not in p.read_text(errors="replace")[:2000])


def page_bytes(page: Path) -> int:
    """The page and the local images it shows (data: URIs are inside the page already)."""
    text = page.read_text(errors="replace")
    images = {(page.parent / src).resolve() for src in re.findall(r'<img[^>]*\ssrc="([^"]+)"', text)
              if not src.startswith(("data:", "http:", "https:", "//"))}
    return page.stat().st_size + sum(p.stat().st_size for p in images if p.is_file())


# what an interactive figure shows beside its image: the frame's value as the reader sees
# it (the <output> beside the slider), its controls, and the size of its panels as shown
FIGURE_STATE = """(anim) => {
  const out = anim.querySelector('output'), img = anim.querySelector('img');
  const fig = anim.closest('figure');
  const shown = out && out.getClientRects().length > 0 ? out.innerText.trim() : '';
  const panel = fig && fig.dataset.panelPx ? +fig.dataset.panelPx * img.getBoundingClientRect().width
                                             / img.naturalWidth : null;
  return {label: shown,
          controls: [...anim.querySelectorAll('button, input:not([type=range]), select')]
                      .map(b => b.getAttribute('aria-label') || b.getAttribute('title') || b.innerText.trim()),
          panel: panel === null ? null : Math.round(panel),
          min_panel: fig && fig.dataset.minPanelPx ? +fig.dataset.minPanelPx : null};
}"""
STEP_CONTROLS = ["First frame", "Previous frame", "Next frame", "Last frame"]


def move_slider(page, anim) -> dict:
    """Move one interactive figure's slider with the keyboard; what it drew and showed
    before and after."""
    img, slider = anim.query_selector("img"), anim.query_selector("input[type=range]")
    img.scroll_into_view_if_needed()
    before = dict(src=img.get_attribute("src"), shot=img.screenshot(), value=slider.input_value(),
                  frames=int(slider.get_attribute("max") or 0) + 1, **anim.evaluate(FIGURE_STATE))
    slider.focus()
    page.keyboard.press("End" if before["value"] != str(before["frames"] - 1) else "Home")
    page.wait_for_timeout(50)
    return dict(before=before, value=slider.input_value(), src=img.get_attribute("src"), shot=img.screenshot(),
                label=anim.evaluate(FIGURE_STATE)["label"])


@pytest.fixture(scope="module")
def report(built_book) -> dict[str, dict]:
    """Open every page once in one browser; what each check found, by page."""
    returncode, log, html = built_book
    assert returncode == 0, "the book did not build:\n" + log
    found = {}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.route(re.compile(r"^(https?|wss?)://"), lambda route: route.abort())   # offline
        for path in pages(html):
            page = context.new_page()
            errors = []
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            page.goto(path.as_uri(), wait_until="load")
            page.wait_for_timeout(100)              # the figures start in a setTimeout
            r = dict(errors=[e for e in errors if not any(a in e for a in ALLOWED_ERRORS)],
                     broken_images=page.evaluate(BROKEN_IMAGES), widgets=page.evaluate(WIDGETS),
                     bytes=page_bytes(path), sliders=[], math=page.evaluate(MATH))
            r["readability"] = page.evaluate(READABILITY, MIN_SHOWN_SHARE)   # before any slider moves
            visible, prose = page.evaluate(VISIBLE_TEXT), page.evaluate(PROSE_TEXT)
            r["raw_tables"] = [m.group(0).strip()[:80] for m in PIPE_TABLE.finditer(prose)]
            r["progress_text"] = [m.group(0)[:80] for m in PROGRESS_TEXT.finditer(visible)]
            r["placeholders"] = sorted({m.group(0) for m in PLACEHOLDERS.finditer(visible)})
            for anim in page.query_selector_all("div.animation"):
                r["sliders"].append(move_slider(page, anim))
            found[str(path.relative_to(html))] = r
            page.close()
        browser.close()
    return found


def problems(report, key) -> dict:
    return {page: r[key] for page, r in report.items() if r[key]}


def test_every_image_loads(report):
    assert not problems(report, "broken_images")


def test_no_javascript_errors(report):
    assert not problems(report, "errors")


def test_no_markdown_table_left_as_raw_text(report):
    assert not problems(report, "raw_tables")


def test_no_frozen_progress_bar_or_widget(report):
    progress = {page: r["widgets"] for page, r in report.items()
                if any(set(names) & set(PROGRESS_MODELS) for names in r["widgets"])}
    assert not progress, f"frozen progress bars (ipywidgets/tqdm in a stored output): {progress}"
    assert not problems(report, "progress_text"), "progress-bar text left in a stored output"
    assert not problems(report, "widgets"), ("ipywidgets controls on a static page (blank offline, frozen "
                                             "online): give them a static counterpart and hide them")


def test_math_renders_offline(report):
    """MathJax comes with the build (book/_ext/local_mathjax.py), so no raw \\( ... \\) is left."""
    raw = {page: r["math"] for page, r in report.items() if r["math"]["rendered"] < r["math"]["expected"]}
    assert not raw, f"math left unrendered offline (expected vs rendered): {raw}"


def test_no_placeholder_text(report):
    assert not problems(report, "placeholders")


def test_pages_stay_under_6_mb(report):
    print(json.dumps({page: dict(bytes=r["bytes"], interactive=len(r["sliders"])) for page, r in report.items()},
                     indent=1, sort_keys=True))                    # shown with pytest -rA
    big = {page: r["bytes"] for page, r in report.items() if r["bytes"] > MAX_PAGE_BYTES}
    assert not big, f"pages over {MAX_PAGE_BYTES:,} bytes (with their images): {big}"


def test_at_least_six_interactive_figures(report):
    summary = {page: len(r["sliders"]) for page, r in report.items() if r["sliders"]}
    assert sum(summary.values()) >= MIN_INTERACTIVE, (
        f"{sum(summary.values())} interactive figures in the book, want >= {MIN_INTERACTIVE}: {summary}")


def test_interactive_figures_change_when_their_slider_moves(report):
    stuck = []
    for page, r in report.items():
        for k, s in enumerate(r["sliders"]):
            where = f"{page}, interactive figure {k + 1}"
            if s["before"]["frames"] < 2:
                stuck.append(f"{where}: {s['before']['frames']} frame(s)")
            elif s["value"] == s["before"]["value"]:
                stuck.append(f"{where}: the slider did not move")
            elif s["src"] == s["before"]["src"]:
                stuck.append(f"{where}: the frame shown did not change (slider {s['before']['value']} -> {s['value']})")
            elif s["shot"] == s["before"]["shot"]:
                stuck.append(f"{where}: what is drawn did not change (slider {s['before']['value']} -> {s['value']})")
    assert not stuck, stuck


def test_interactive_figures_show_the_value_they_are_at(report):
    """Each slider figure writes its frame's value beside the slider, and it changes with
    the slider; its controls are the step buttons, with no Play/Loop/speed controls for a
    discrete sweep (issue 21)."""
    bad = []
    for page, r in report.items():
        for k, s in enumerate(r["sliders"]):
            where = f"{page}, interactive figure {k + 1}"
            if not s["before"]["label"]:
                bad.append(f"{where}: no value shown beside the slider")
            elif s["label"] == s["before"]["label"]:
                bad.append(f"{where}: the value shown stayed {s['label']!r} when the slider moved "
                           f"({s['before']['value']} -> {s['value']})")
            if s["before"]["controls"] != STEP_CONTROLS:
                bad.append(f"{where}: controls {s['before']['controls']}, want only {STEP_CONTROLS}")
    assert not bad, "\n".join(bad)


def test_slider_panels_are_shown_large_enough(report):
    """A slider figure that asks for a smallest panel size (chapter 9's samples: 56 px) is
    shown at least that large at a 1280-px window."""
    small, asked = [], 0
    for page, r in report.items():
        for k, s in enumerate(r["sliders"]):
            if s["before"]["min_panel"] is not None:
                asked += 1
                if s["before"]["panel"] < s["before"]["min_panel"]:
                    small.append(f"{page}, interactive figure {k + 1}: panels shown at {s['before']['panel']} px, "
                                 f"want >= {s['before']['min_panel']:g}")
    assert asked, "no slider figure asks for a smallest panel size (chapter 9's guidance frames should)"
    assert not small, "\n".join(small)


def unreadable(report, key) -> list:
    """One finding of READABILITY per item, with its page, over the whole book."""
    return [dict(page=page, **f) for page, r in sorted(report.items()) for f in r["readability"][key]]


def cell(f) -> str:
    return f"{f['page']}, code cell {f['cell']} ({f['source']!r})"


def test_no_output_that_is_only_true_or_false(report):
    """A check's return value left unassigned shows a bare True: assign it (``_ = check(...)``)."""
    bare = [f"{cell(f)}: the output is only {f['text']}" for f in unreadable(report, "bare")]
    assert not bare, "outputs that are only True or False:\n" + "\n".join(bare)


def test_printed_lines_fit_the_column(report):
    """No <pre> in a cell's output (printed text, shown source) wider than its box."""
    wide = [f"{cell(f)}: {f['scroll']} px in a {f['client']} px box, longest line ({f['chars']} chars) "
            f"{f['longest']!r}" for f in unreadable(report, "wide")]
    assert not wide, (f"{len(wide)} printed outputs wider than the column (wrap them, e.g. textwrap.fill(s, 76), "
                      "or print fewer digits):\n" + "\n".join(wide))


def test_figures_are_shown_at_the_width_they_are_drawn(report):
    """An output image shown under 85 % of its drawn width (its width attribute, else its
    pixels) shrinks its text under about 9 px: draw it at most as wide as the column."""
    small = [f"{cell(f)}: {'slider figure' if f['slider'] else 'figure'} drawn {f['drawn']} px, shown "
             f"{f['shown']} px ({f['share']:.0%})" for f in unreadable(report, "figures")]
    assert not small, (f"{len(small)} figures shown under {MIN_SHOWN_SHARE:.0%} of their drawn width "
                       "(make the figure narrower, figsize):\n" + "\n".join(small))


def test_display_equations_fit_the_column(report):
    """No typeset display equation wider than the text column."""
    wide = [f"{f['page']}: {f['scroll']} px in a {f['client']} px column: {f['tex']!r}"
            for f in unreadable(report, "equations")]
    assert not wide, ("display equations wider than the column (split them with \\begin{aligned}):\n"
                      + "\n".join(wide))
