"""The live sampler (issue 24) in a real browser: the built book (the session fixture
``built_book``) served on localhost by Python's http.server, opened in headless Chromium
(Debian's ``/usr/bin/chromium`` driven by Playwright) with every request that leaves the
book refused, on both pages that have one (chapter 8, unconditional; chapter 9,
class-conditional with guidance).

- Loading a page fetches nothing heavy: no runtime, no .wasm, no .onnx before the press.
- Sample with 2 steps draws a non-blank x_t and guess, with no JavaScript error and no
  request leaving the book; the time per network pass it shows is printed (``-s``/``-rA``).
- From a fixed starting noise passed from Python (and the fresh noise ``samples`` draws
  at each step), the page's loop gives the x_t and the guesses x0_hat that
  ``smallunet.samples`` and ``samples_heun`` give, within ATOL; its noise levels are
  ``sample_sigmas(steps)``'s exactly.
- Bad settings are refused with a message beside their control, and nothing runs.
- Opened from disk (file://) the page says how to serve the book instead.
- Where the browser offers a WebGPU adapter (here Chromium's software one, SwiftShader,
  when it has it), the backend "auto" runs the model on WebGPU, and one step from torch's
  noise still gives what ``samples`` gives (one step only: the software GPU takes tens of
  seconds a pass on this machine).
Skips only when playwright or chromium is missing.
"""
from __future__ import annotations

import functools
import http.server
import re
import threading

import numpy as np
import pytest
import torch

from chromium_setup import ALLOWED_ERRORS, ARGS, CHROMIUM, require_browser  # noqa: E402

sync_api = require_browser()

from smallunet import ScheduleLogLinear, samples, samples_heun  # noqa: E402
from smallunet.pretrained import load_pretrained, pretrained_info  # noqa: E402

PAGES = {"chapters/08_sampling.html": "unet_fashion", "chapters/09_conditioning.html": "unet_fashion_cond"}
HEAVY = re.compile(r"/_static/live/(ort/|.*\.onnx$)")
# ORT's WebAssembly kernels against PyTorch's CPU ones, both fp32 with the same fp16-stored
# weights: eps differs in float rounding only (tests/test_onnx_export.py bounds it within
# 1e-3 at sigma = 0.02, and it is largest at small sigma). A step multiplies that by its
# length (about 19.5 from sigma = 20), guidance by 1 + 2s (5 at s = 2), and samples_heun's
# second evaluation, at sigma_prev ~ 0.45, enters with weight h / 2 ~ 9.8. Measured over
# the two steps (x_t and x0_hat, both pages, printed): samples at most 4e-4, samples_heun
# 3.2e-3 (with guidance); ATOL leaves a factor of 3 to 5. On WebGPU (SwiftShader's software
# adapter, other kernels and summation orders) one step of samples differed by 1.7e-3.
ATOL = {"samples": 2e-3, "samples_heun": 1e-2, "webgpu": 5e-3}
TIMED_STEPS = 10
TIMEOUT_MS = 180_000          # the first press loads ~24 MB and compiles the WebAssembly


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(built_book):
    """The built book served on localhost (any static server would do): (url, html folder)."""
    returncode, log, html = built_book
    assert returncode == 0, "the book did not build:\n" + log
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", html
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def playwright():
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright):
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    yield b
    b.close()


class Visit:
    """One page in a fresh browser context that lets only the book's own server through,
    and records every request, every JavaScript error and every console error."""

    def __init__(self, browser, url, origin):
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.requests, self.refused, self.errors = [], [], []

        def route(r):
            if r.request.url.startswith(origin):
                r.continue_()
            else:
                self.refused.append(r.request.url)
                r.abort()
        self.context.route("**/*", route)
        self.page = self.context.new_page()
        self.page.on("request", lambda req: self.requests.append(req.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        # console errors of the sampler's own files (the theme logs one of its own on a
        # first visit, "Got invalid theme mode"); uncaught exceptions from anywhere
        self.page.on("console", lambda m: self.errors.append(f"console: {m.text} ({m.location.get('url')})")
                     if m.type == "error" and "/_static/live/" in (m.location.get("url") or "") else None)
        self.page.goto(url, wait_until="load")

    def js_errors(self):
        return [e for e in self.errors if not any(a in e for a in ALLOWED_ERRORS)]

    def heavy(self):
        return [u for u in self.requests if HEAVY.search(u)]

    def close(self):
        self.context.close()


@pytest.fixture(params=sorted(PAGES))
def visit(request, site, browser):
    url, _ = site
    v = Visit(browser, url + request.param, url)
    v.name, v.model = request.param, PAGES[request.param]
    v.box = v.page.locator(f"div.smallunet-live[data-model={v.model}]")
    yield v
    v.close()


def test_the_page_has_the_sampler_and_loads_nothing_heavy(visit):
    assert visit.box.count() == 1, f"{visit.name}: no live sampler for {visit.model}"
    assert visit.box.locator("button.live-sample").is_enabled()
    visit.page.wait_for_timeout(500)
    assert not visit.heavy(), f"fetched before any press: {visit.heavy()}"
    assert not visit.js_errors() and not visit.refused


def canvas_stats(page, box, cls):
    return box.locator(f"canvas.{cls}").evaluate("""c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const v = []; for (let i = 0; i < d.length; i += 4) v.push(d[i]);
        const m = v.reduce((a, b) => a + b, 0) / v.length;
        return {mean: m, std: Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / v.length),
                width: c.getBoundingClientRect().width};
    }""")


def test_two_steps_draw_an_image_offline(visit):
    box = visit.box
    box.locator("input[data-field=steps]").fill("2")
    box.locator("button.live-sample").click()
    visit.page.wait_for_function("b => ['done', 'failed'].includes(b.getAttribute('data-state'))",
                                 arg=box.element_handle(), timeout=TIMEOUT_MS)
    status = box.locator(".live-status[role=status]").inner_text()
    assert box.get_attribute("data-state") == "done", status
    assert box.get_attribute("data-backend") == "WebAssembly, one thread"     # no GPU adapter here
    for cls in ("live-xt", "live-x0hat"):
        s = canvas_stats(visit.page, box, cls)
        assert s["std"] > 10 and s["width"] >= 56, f"{cls} looks blank or small: {s}"
    assert not visit.js_errors(), visit.js_errors()
    assert not visit.refused, f"requests that left the book: {visit.refused}"
    # the time per network pass, steadier over more passes than two steps give (the model is loaded now)
    timed = visit.page.evaluate("""a => smallunetLive.sample(a).then(r => ({ms: r.msPerPass, passes: r.passes,
                                                                            batch: r.batch}))""",
                                dict(model=visit.model, steps=TIMED_STEPS, gam=1.6, mu=0.0, seed=1, label=3,
                                     cfgScale=2.0, sampler="samples"))
    print(f"\n{visit.name} ({visit.model}), headless Chromium, WebAssembly on 1 thread: the press showed "
          f"{box.locator('.live-timing').inner_text()!r}; {TIMED_STEPS} more steps: median "
          f"{timed['ms']:.1f} ms per network pass (batch of {timed['batch']}) over {timed['passes'] - 1} passes")
    assert timed["passes"] == TIMED_STEPS


def python_run(name, steps, gam, mu, label, cfg_scale, heun, seed=0):
    """smallunet's sampler from torch's noise: the draws (in samples' order), every x_t, every guess."""
    model = load_pretrained(name=name).float().eval()
    cfg = pretrained_info(name)["config"]
    sigmas = ScheduleLogLinear(N=cfg["N"], sigma_min=cfg["sigma_min"], sigma_max=cfg["sigma_max"]).sample_sigmas(steps)
    cond = torch.tensor([label]) if label is not None else None
    draws = torch.Generator().manual_seed(seed)
    noise = [model.rand_input(1, generator=draws) for _ in range(1 if heun else steps + 1)]
    if heun:
        xts = list(samples_heun(model, sigmas, cond=cond, cfg_scale=cfg_scale,
                                generator=torch.Generator().manual_seed(seed)))
    else:
        xts = list(samples(model, sigmas, gam=gam, mu=mu, cond=cond, cfg_scale=cfg_scale,
                           generator=torch.Generator().manual_seed(seed)))
    starts = [noise[0] * sigmas[0].item()] + xts[:-1]
    with torch.no_grad():
        guesses = [x - s * model.predict_eps_cfg(x, s, cond, cfg_scale) for x, s in zip(starts, sigmas[:-1])]
    return sigmas, noise, xts, guesses


@pytest.mark.parametrize("heun", [False, True], ids=["samples", "samples_heun"])
def test_the_page_computes_what_smallunet_samples_computes(visit, heun):
    torch.set_num_threads(1)
    conditional = visit.model.endswith("cond")
    label, cfg_scale = (7, 2.0) if conditional else (None, 0.0)
    gam, mu = 1.6, 0.5                  # momentum and fresh noise at each step: every term of the loop
    sampler = "samples_heun" if heun else "samples"
    sigmas, noise, xts, guesses = python_run(visit.model, 2, gam, mu, label, cfg_scale, heun)
    got = visit.page.evaluate("""async a => {
        const r = await smallunetLive.sample(a);
        return {sigmas: r.sigmas, xt: r.xt.map(x => Array.from(x)), x0hat: r.x0hat.map(x => Array.from(x))};
    }""", dict(model=visit.model, steps=2, gam=gam, mu=mu, label=label, cfgScale=cfg_scale,
               sampler=sampler, noise=[z.flatten().tolist() for z in noise]))
    assert np.array_equal(np.float32(got["sigmas"]), sigmas.numpy())
    worst = 0.0
    for what, mine, theirs in (("x_t", got["xt"], xts), ("x0_hat", got["x0hat"], guesses)):
        for i, (a, b) in enumerate(zip(mine, theirs)):
            diff = float(np.abs(np.float32(a) - b.flatten().numpy()).max())
            worst = max(worst, diff)
            assert diff <= ATOL[sampler], f"{visit.model}, {sampler}: {what} after step {i + 1} differs by {diff:.2e}"
    print(f"\n{visit.model} {'samples_heun' if heun else f'samples gam={gam} mu={mu}'}"
          f"{f' class {label} guidance {cfg_scale}' if conditional else ''}: "
          f"page vs smallunet, max |difference| over x_t and x0_hat of 2 steps = {worst:.2e}")
    assert not visit.js_errors()


def test_the_noise_levels_are_sample_sigmas(visit):
    cfg = pretrained_info(visit.model)["config"]
    schedule = ScheduleLogLinear(N=cfg["N"], sigma_min=cfg["sigma_min"], sigma_max=cfg["sigma_max"])
    steps = [1, 2, 3, 7, 20, 64, 100, 533, 799, 800]     # 64: halves that numpy rounds to even
    got = visit.page.evaluate("""a => a.steps.map(n => Array.from(smallunetLive.sampleSigmas(
        smallunetLive.config.models[a.model].levels, n)))""", dict(model=visit.model, steps=steps))
    for n, levels in zip(steps, got):
        assert np.array_equal(np.float32(levels), schedule.sample_sigmas(n).numpy()), f"steps={n}"


BAD = {"steps": ["0", "-3", "2.5", "801", "many"], "gam": ["abc", "", "1.6x"], "mu": ["1", "-0.1", "x"],
       "seed": ["-1", "1.5"], "label": ["10", "-1", "3.5", "dress"], "cfgScale": ["-0.5", "lots"]}
WORD = {"steps": "steps", "gam": "gam", "mu": "mu", "seed": "seed", "label": "class", "cfgScale": "guidance"}


def test_bad_settings_are_refused_beside_their_control(visit):
    box = visit.box
    fields = [f for f in BAD if box.locator(f"input[data-field={f}]").count()]
    assert ("label" in fields) == visit.model.endswith("cond")
    for field in fields:
        control = box.locator(f"input[data-field={field}]")
        good = control.input_value()
        message = box.locator(f".live-error[data-error-for={field}]")
        for value in BAD[field]:
            control.fill(value)
            text = message.inner_text()
            assert WORD[field] in text and f'got "{value}"' in text, (field, value, text)
            # the message sits beside its control: in the same label, right after it
            assert message.evaluate("(m, c) => m.previousElementSibling === c", control.element_handle())
            box.locator("button.live-sample").click()
            assert "Not sampled" in box.locator(".live-status[role=status]").inner_text()
        control.fill(good)
        assert message.inner_text() == ""
    assert box.get_attribute("data-state") is None and not visit.heavy()
    assert not visit.js_errors()


def test_opened_from_disk_it_says_how_to_serve_the_book(site, browser):
    _, html = site
    for name, model in PAGES.items():
        context = browser.new_context()
        context.route(re.compile(r"^(https?|wss?)://"), lambda route: route.abort())
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((html / name).as_uri(), wait_until="load")
        box = page.locator(f"div.smallunet-live[data-model={model}]")
        assert "python -m http.server" in box.inner_text()
        assert box.locator("button.live-sample").is_disabled()
        assert not [e for e in errors if not any(a in e for a in ALLOWED_ERRORS)]
        context.close()


GPU_ARGS = ["--no-sandbox", "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--enable-unsafe-webgpu", "--use-angle=swiftshader", "--use-webgpu-adapter=swiftshader"]


def test_webgpu_where_the_browser_offers_it(site, playwright):
    url, _ = site
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=GPU_ARGS)
    v = Visit(browser, url + "chapters/08_sampling.html", url)
    try:
        if not v.page.evaluate("async () => !!(navigator.gpu && await navigator.gpu.requestAdapter())"):
            pytest.skip("this Chromium offers no WebGPU adapter, not even SwiftShader's")
        sigmas, noise, xts, guesses = python_run("unet_fashion", 1, 1.0, 0.0, None, 0.0, heun=False)
        got = v.page.evaluate("""async a => {
            const r = await smallunetLive.sample(a);
            return {backend: r.backend, xt: Array.from(r.xt[0]), x0hat: Array.from(r.x0hat[0])};
        }""", dict(model="unet_fashion", steps=1, gam=1.0, mu=0.0, sampler="samples", backend="auto",
                   noise=[z.flatten().tolist() for z in noise]))
        assert got["backend"] == "WebGPU"
        diffs = {what: float(np.abs(np.float32(got[what]) - want.flatten().numpy()).max())
                 for what, want in (("xt", xts[0]), ("x0hat", guesses[0]))}
        print(f"\nWebGPU (SwiftShader) vs smallunet, one step of samples: max |difference| {diffs}")
        assert max(diffs.values()) <= ATOL["webgpu"], diffs
        assert any("ort.webgpu.min.js" in u for u in v.requests) and not v.refused
        assert not v.js_errors(), v.js_errors()
    finally:
        v.close()
        browser.close()
