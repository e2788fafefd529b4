/* smallunet's live sampler: the book's sampler loop run in the reader's browser.
 *
 * The network is the shipped U-Net, exported to ONNX by scripts/export_onnx.py
 * (predict_eps: x (B, 1, 28, 28), sigma (1,) [, labels (B,)] -> eps), run by
 * onnxruntime-web: its WebGPU build where the browser offers a GPU adapter (backend
 * "auto"), else its WebAssembly build on one thread. The loop around it is
 * smallunet/sampling.py's `samples` (and `samples_heun`), line for line; the comments
 * quote the Python each line reproduces.
 *
 * Nothing heavy loads with the page: the runtime (ort/) and the model are fetched on
 * the first press of Sample, from the built book itself (_static/live/), and kept for
 * the next presses (the page states their sizes).
 *
 * window.SMALLUNET_LIVE (the settings taken from the package at build time: the
 * sampler's defaults, each model's classes, guidance scale and schedule levels) is
 * written above this comment by book/_ext/live_sampler.py, which builds this file.
 *
 * For tests and the curious: window.smallunetLive.sample({...}) runs the loop with a
 * given starting noise (see `sample` below).
 */
(function () {
  "use strict";
  const CONFIG = window.SMALLUNET_LIVE;
  const script = document.currentScript;
  const BASE = new URL(".", script.src).href;          // .../_static/live/
  // the two builds of onnxruntime-web; a page loads one of them (both define window.ort)
  const RUNTIMES = {wasm: {script: "ort/ort.wasm.min.js", name: "WebAssembly, one thread"},
                    webgpu: {script: "ort/ort.webgpu.min.js", name: "WebGPU"}};
  const f32 = Math.fround;

  // ---------------------------------------------------------------- the noise levels
  // Schedule.sample_sigmas(steps) in smallunet/schedules.py:
  //   indices = list((len(self) * (1 - np.arange(0, steps) / steps)).round()
  //                  .astype(np.int64) - 1)
  //   return self[indices + [0]]
  // `levels` are the schedule's N sigmas, ScheduleLogLinear(N, sigma_min, sigma_max)
  // .sigmas, written by the build from the package itself: torch.logspace's float32
  // values differ from a correctly rounded 10**x by up to 3 units in the last place,
  // so computing them here would not give the same levels.
  function roundHalfEven(v) {                           // numpy's round(): halves to even
    const r = Math.round(v);
    return (Math.abs(v % 1) === 0.5 && r % 2 !== 0) ? r - 1 : r;
  }
  function sampleSigmas(levels, steps) {
    const N = levels.length;
    const out = new Float32Array(steps + 1);
    for (let i = 0; i < steps; i++)                      // the same float64 arithmetic as numpy
      out[i] = levels[roundHalfEven(N * (1 - i / steps)) - 1];
    out[steps] = levels[0];                              // + [0]: the smallest level ends it
    return out;
  }

  // ---------------------------------------------------------------- the page's noise
  // torch.randn's stream cannot be reproduced here, so the page draws its own standard
  // normal noise from the seed (mulberry32 and Box-Muller): a seed gives the same
  // pictures in the page every time, not the pictures torch.manual_seed(seed) gives.
  function gaussianStream(seed) {
    let a = seed >>> 0, spare = null;
    const uniform = () => {                              // mulberry32: (0, 1)
      a = (a + 0x6D2B79F5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
    };
    const normal = () => {
      if (spare !== null) { const s = spare; spare = null; return s; }
      const r = Math.sqrt(-2 * Math.log(uniform())), th = 2 * Math.PI * uniform();
      spare = r * Math.sin(th);
      return r * Math.cos(th);
    };
    return n => { const z = new Float32Array(n); for (let i = 0; i < n; i++) z[i] = normal(); return z; };
  }

  // ---------------------------------------------------------------- the runtime
  let runtimePromise = null, runtimeKind = null;
  const sessions = {};
  // "auto": WebGPU where the browser offers an adapter, else WebAssembly; "wasm": WebAssembly
  async function pickRuntime(backend) {
    if (runtimeKind) return runtimeKind;                 // the page has loaded one already
    if (backend !== "auto" || !navigator.gpu) return "wasm";
    try { return (await navigator.gpu.requestAdapter()) ? "webgpu" : "wasm"; } catch (e) { return "wasm"; }
  }
  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src;
      s.onload = resolve;
      s.onerror = () => reject(new Error("could not load " + src));
      document.head.appendChild(s);
    });
  }
  function runtime(kind) {
    if (!runtimePromise) {
      runtimeKind = kind;
      runtimePromise = loadScript(BASE + RUNTIMES[kind].script).then(() => {
        const ort = window.ort;
        ort.env.wasm.wasmPaths = BASE + "ort/";        // the .wasm and its .mjs, from the book
        ort.env.wasm.numThreads = 1;                     // static hosts are not cross-origin isolated
        ort.env.logLevel = "error";
        return ort;
      });
      runtimePromise.catch(() => { runtimePromise = null; runtimeKind = null; });   // retried next press
    }
    return runtimePromise;
  }
  // one session per model; on the WebGPU build, a model WebGPU cannot run falls back to
  // that build's own WebAssembly kernels (session.backend says which ran)
  function session(name) {
    if (!sessions[name]) {
      const url = BASE + CONFIG.models[name].file;
      const options = ep => ({executionProviders: [ep], logSeverityLevel: 3});   // errors only
      sessions[name] = runtime(runtimeKind).then(async ort => {
        if (runtimeKind === "webgpu") {
          try {
            const s = await ort.InferenceSession.create(url, options("webgpu"));
            return Object.assign(s, {backend: RUNTIMES.webgpu.name});
          } catch (err) {
            const s = await ort.InferenceSession.create(url, options("wasm"));
            return Object.assign(s, {backend: "WebAssembly, one thread (WebGPU failed: " + err.message + ")"});
          }
        }
        const s = await ort.InferenceSession.create(url, options("wasm"));
        return Object.assign(s, {backend: RUNTIMES.wasm.name});
      });
      sessions[name].catch(() => { delete sessions[name]; });
    }
    return sessions[name];
  }

  // ---------------------------------------------------------------- the network
  // ModelMixin.predict_eps_cfg (smallunet/denoiser.py), for one image x (784 floats):
  //   if cond is None or cfg_scale == 0: return self.predict_eps(x, sigma, cond=cond)
  //   uncond = torch.full_like(cond, self.cond_embed.null_cond)
  //   x2, cond2 = torch.cat([x, x]), torch.cat([cond, uncond])
  //   eps = self.predict_eps(x2, sigma.reshape(()), cond2)      # one pass of 2B
  //   eps_cond, eps_uncond = eps.chunk(2)
  //   return eps_cond + cfg_scale * (eps_cond - eps_uncond)
  function network(sess, ort, model, label, cfgScale, timing) {
    const D = 784;
    return async function predictEpsCfg(x, sig) {
      const guided = label !== null && cfgScale !== 0;
      const B = guided ? 2 : 1;
      const xs = new Float32Array(B * D);
      for (let b = 0; b < B; b++) xs.set(x, b * D);
      const feed = {x: new ort.Tensor("float32", xs, [B, 1, 28, 28]),
                    sigma: new ort.Tensor("float32", Float32Array.of(sig), [1])};
      if (model.num_classes)
        feed.labels = new ort.Tensor("int64", BigInt64Array.from(
          guided ? [BigInt(label), BigInt(model.null_class)] : [BigInt(label)]), [B]);
      const t0 = performance.now();
      const out = await sess.run(feed);
      timing.push(performance.now() - t0);
      const eps = out.eps.data;
      if (!guided) return Float32Array.from(eps);
      const e = new Float32Array(D);
      for (let j = 0; j < D; j++)
        e[j] = f32(eps[j] + f32(cfgScale * f32(eps[j] - eps[D + j])));
      return e;
    };
  }

  // ---------------------------------------------------------------- the samplers
  // sample(opts) runs `samples` (opts.sampler "samples", with gam and mu) or
  // `samples_heun` ("samples_heun") for one image and returns
  //   {sigmas, xt: [x after each step], x0hat: [the guess made at each step],
  //    passes, msPerPass (the median pass after the first), msFirst, batch}
  // opts: model (a name in SMALLUNET_LIVE.models), steps, gam, mu, sampler,
  //   label and cfgScale (conditional model), backend ("auto" or "wasm", as pickRuntime;
  //   the first call on a page decides), and either seed (the page's noise) or
  //   noise: [z0, z1, ...] standard normal arrays of 784 floats, used in the order
  //   samples draws them (z0 starts the chain, then one per step), so that a test can
  //   start from torch's noise; onStep(i, info) is awaited after every step.
  async function sample(opts) {
    const model = CONFIG.models[opts.model];
    if (!model) throw new Error("no model named " + opts.model);
    const sigmas = sampleSigmas(model.levels, opts.steps);
    const draw = opts.noise ? fromList(opts.noise) : gaussianStream(opts.seed);
    const ort = await runtime(await pickRuntime(opts.backend || "auto"));
    const sess = await session(opts.model);
    const timing = [];
    const label = model.num_classes ? opts.label : null;
    const eps = network(sess, ort, model, label, model.num_classes ? opts.cfgScale : 0, timing);
    const loop = opts.sampler === "samples_heun" ? heunLoop : samplesLoop;
    const result = await loop(eps, sigmas, opts.gam, opts.mu, draw, opts.onStep || (() => {}));
    const later = (timing.length > 1 ? timing.slice(1) : timing).sort((a, b) => a - b);   // the first includes set-up
    const median = (later[(later.length - 1) >> 1] + later[later.length >> 1]) / 2;
    return Object.assign(result, {sigmas: Array.from(sigmas), passes: timing.length,
      msPerPass: median, msFirst: timing[0], backend: sess.backend,
      batch: label !== null && opts.cfgScale !== 0 ? 2 : 1});
  }
  function fromList(list) {
    let k = 0;
    return n => {
      if (k >= list.length) throw new Error("noise: the sampler needs more than the " + list.length + " arrays given");
      const z = Float32Array.from(list[k++]);
      if (z.length !== n) throw new Error("noise: each array must hold " + n + " values, got " + z.length);
      return z;
    };
  }
  const D = 784;
  function guess(x, sig, e) {                           // x0_hat = x_t - sigma * eps (chapter 8)
    const g = new Float32Array(D);
    for (let j = 0; j < D; j++) g[j] = f32(x[j] - f32(sig * e[j]));
    return g;
  }

  // samples (smallunet/sampling.py), for a batch of one image; predictEps is the
  // model's predict_eps_cfg above, noise(n) the next standard normal draw.
  async function samplesLoop(predictEps, sigmas, gam, mu, noise, onStep) {
    const steps = sigmas.length - 1;
    // if xt is None:                # pure noise at the largest level
    //     xt = noise(batchsize) * sigmas[0].item()
    let xt = noise(D).map(z => f32(z * sigmas[0]));
    let eps = null;                                      // eps = None
    const xts = [], x0hats = [];
    // for i, (sig, sig_prev) in enumerate(pairwise(sigmas)):
    for (let i = 0; i < steps; i++) {
      const sig = sigmas[i], sigPrev = sigmas[i + 1];
      // eps_prev, eps = eps, predict_eps(xt, sig)
      const epsPrev = eps;
      eps = await predictEps(xt, sig);
      // eps_av = eps * gam + eps_prev * (1 - gam) if i > 0 else eps
      const epsAv = i > 0 ? eps.map((e, j) => f32(f32(e * gam) + f32(epsPrev[j] * f32(1 - gam)))) : eps;
      // sig_p solves sig_prev = sig**mu * sig_p**(1-mu)
      // sig_p = (sig_prev / sig ** mu) ** (1 / (1 - mu))
      const sigP = f32(Math.pow(f32(sigPrev / f32(Math.pow(sig, mu))), 1 / (1 - mu)));
      // clamp: in a zero-length step (sig_prev == sig) sig_p can round just above sig_prev
      // eta = (sig_prev ** 2 - sig_p ** 2).clamp(min=0).sqrt()
      const eta = f32(Math.sqrt(Math.max(0, f32(f32(sigPrev * sigPrev) - f32(sigP * sigP)))));
      // xt = (xt - (sig - sig_p).to(xt) * eps_av
      //       + eta.to(xt) * noise(len(xt)))
      const z = noise(D), h = f32(sig - sigP), x0hat = guess(xt, sig, eps);
      xt = xt.map((x, j) => f32(f32(x - f32(h * epsAv[j])) + f32(eta * z[j])));
      xts.push(xt); x0hats.push(x0hat);
      await onStep(i, {xt, x0hat, sig, sigPrev});         // yield xt
    }
    return {xt: xts, x0hat: x0hats};
  }

  // samples_heun (smallunet/sampling.py), for a batch of one image: no noise after the
  // start, gam and mu unused.
  async function heunLoop(predictEps, sigmas, gam, mu, noise, onStep) {
    const steps = sigmas.length - 1;
    // if x is None:                 # pure noise at the largest level
    //     x = noise(batchsize) * sigmas[0].item()
    let x = noise(D).map(z => f32(z * sigmas[0]));
    const xts = [], x0hats = [];
    for (let i = 0; i < steps; i++) {                    // for sig, sig_prev in pairwise(sigmas):
      const sig = sigmas[i], sigPrev = sigmas[i + 1];
      if (sigPrev === sig) {                             // a zero-length step: nothing moves
        xts.push(x); x0hats.push(x0hats.length ? x0hats[x0hats.length - 1] : x);
        await onStep(i, {xt: x, x0hat: x0hats[x0hats.length - 1], sig, sigPrev});
        continue;
      }
      const h = f32(sigPrev - sig);                      // h = (sig_prev - sig).to(x)   # < 0
      const d = await predictEps(x, sig);                // d = predict_eps(x, sig)  # the slope at the start
      const x0hat = guess(x, sig, d);
      const xEuler = x.map((v, j) => f32(v + f32(h * d[j])));   // x_euler = x + h * d
      if (sigPrev === 0) {
        x = xEuler;                                      // a step to 0 stays Euler
      } else {                                   // x = x + h * (d + predict_eps(x_euler, sig_prev)) / 2
        const d2 = await predictEps(xEuler, sigPrev);
        x = x.map((v, j) => f32(v + f32(f32(h * f32(d[j] + d2[j])) / 2)));
      }
      xts.push(x); x0hats.push(x0hat);
      await onStep(i, {xt: x, x0hat, sig, sigPrev});
    }
    return {xt: xts, x0hat: x0hats};
  }

  // ---------------------------------------------------------------- the settings
  const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;
  const INTEGER = /^[+]?\d+$/;
  function parse(field, text, model) {
    const t = text.trim(), shown = JSON.stringify(text);
    const num = NUMBER.test(t) ? Number(t) : NaN;
    switch (field) {
      case "steps": {
        const N = model.levels.length;
        return INTEGER.test(t) && num >= 1 && num <= N ? {value: num}
          : {error: `steps must be a whole number from 1 to ${N} (the schedule's N), got ${shown}`};
      }
      case "gam":
        return Number.isFinite(num) ? {value: num} : {error: `gam must be a number, got ${shown}`};
      case "mu":
        return Number.isFinite(num) && num >= 0 && num < 1 ? {value: num}
          : {error: `mu must be a number in [0, 1), got ${shown}`};
      case "seed":
        return INTEGER.test(t) && num <= 4294967295 ? {value: num}
          : {error: `seed must be a whole number from 0 to 4294967295, got ${shown}`};
      case "label": {
        const K = model.num_classes;
        return INTEGER.test(t) && num <= K - 1 ? {value: num}
          : {error: `class must be a whole number from 0 to ${K - 1}, got ${shown}`};
      }
      case "cfgScale":
        return Number.isFinite(num) && num >= 0 ? {value: num}
          : {error: `guidance scale must be a number >= 0, got ${shown}`};
    }
    return {error: "unknown setting " + field};
  }

  // ---------------------------------------------------------------- the page
  const CSS = `
.smallunet-live { border: 1px solid #ccc; border-radius: 4px; padding: 0.6em 0.8em; margin: 1em 0; max-width: 688px; }
.smallunet-live .live-row { display: flex; flex-wrap: wrap; gap: 0.4em 1em; align-items: flex-start; margin: 0.3em 0; }
.smallunet-live label { display: flex; flex-direction: column; font-size: 0.85em; }
.smallunet-live input[type=text] { width: 6.5em; font-family: monospace; }
.smallunet-live .live-error { color: #b00020; font-size: 0.85em; max-width: 16em; }
.smallunet-live canvas { width: 112px; height: 112px; image-rendering: pixelated; border: 1px solid #999; background: #777; }
.smallunet-live figure { margin: 0; text-align: center; font-size: 0.85em; }
.smallunet-live .live-status { font-size: 0.85em; min-height: 1.4em; }
.smallunet-live progress { width: 100%; }`;

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => { if (k === "text") e.textContent = v; else e.setAttribute(k, v); });
    kids.forEach(k => e.appendChild(typeof k === "string" ? document.createTextNode(k) : k));
    return e;
  }

  function drawImage(canvas, x) {                       // [-1, 1] -> grey levels, as the book shows them
    const ctx = canvas.getContext("2d"), img = ctx.createImageData(28, 28);
    for (let j = 0; j < D; j++) {
      const v = Math.round((Math.min(1, Math.max(-1, x[j])) + 1) * 127.5);
      img.data[4 * j] = img.data[4 * j + 1] = img.data[4 * j + 2] = v;
      img.data[4 * j + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }

  function build(root) {
    const name = root.getAttribute("data-model");
    const model = CONFIG.models[name];
    root.textContent = "";
    if (!model) { root.textContent = "live sampler: no model named " + name; return; }
    const d = CONFIG.defaults;
    const fields = [["steps", "steps", d.steps], ["gam", "gam", d.gam], ["mu", "mu", d.mu], ["seed", "seed", d.seed]];
    if (model.num_classes)
      fields.push(["label", "class (0-9)", 0], ["cfgScale", "guidance scale", model.recommended_cfg_scale]);
    const inputs = {}, errors = {};
    const row = el("div", {class: "live-row"});
    for (const [key, text, value] of fields) {
      inputs[key] = el("input", {type: "text", inputmode: "decimal", value: String(value), "data-field": key,
                                 "aria-label": text});
      errors[key] = el("span", {class: "live-error", "data-error-for": key, role: "alert"});
      row.appendChild(el("label", {}, text, inputs[key], errors[key]));
    }
    const sampler = el("select", {"data-field": "sampler", "aria-label": "sampler"},
      el("option", {value: "samples", text: "samples (gam, mu)"}),
      el("option", {value: "samples_heun", text: "samples_heun (2 passes a step)"}));
    row.appendChild(el("label", {}, "sampler", sampler));
    const backend = el("select", {"data-field": "backend", "aria-label": "backend"},
      el("option", {value: "auto", text: "WebGPU if offered"}),
      el("option", {value: "wasm", text: "WebAssembly"}));
    if (!navigator.gpu) { backend.value = "wasm"; backend.disabled = true; }   // no WebGPU in this browser
    row.appendChild(el("label", {}, "backend", backend));
    const button = el("button", {type: "button", class: "live-sample"}, "Sample");
    row.appendChild(el("label", {}, "\u00a0", button));
    const classNote = el("div", {class: "live-status live-class"});
    const canvX = el("canvas", {width: 28, height: 28, class: "live-xt"});
    const canvG = el("canvas", {width: 28, height: 28, class: "live-x0hat"});
    const capX = el("figcaption", {text: "x_t"}), capG = el("figcaption", {text: "guess x\u03020"});
    const progress = el("progress", {max: 1, value: 0});
    const status = el("div", {class: "live-status", role: "status"});
    const timing = el("div", {class: "live-status live-timing"});
    root.append(row, classNote,
      el("div", {class: "live-row"}, el("figure", {}, canvX, capX), el("figure", {}, canvG, capG)),
      progress, status, timing);

    function check() {
      const values = {}; let ok = true;
      for (const key of Object.keys(inputs)) {
        const r = parse(key, inputs[key].value, model);
        errors[key].textContent = r.error || "";
        inputs[key].setAttribute("aria-invalid", r.error ? "true" : "false");
        if (r.error) ok = false; else values[key] = r.value;
      }
      if (model.num_classes && values.label !== undefined)
        classNote.textContent = `class ${values.label}: ${model.class_names[values.label]}`;
      return ok ? values : null;
    }
    Object.values(inputs).forEach(i => i.addEventListener("input", check));
    check();

    if (location.protocol === "file:") {
      button.disabled = true;
      status.textContent = "This page was opened from disk (file://), where browsers do not load " +
        "WebAssembly. Serve the built book and open the page through the server: " +
        "python -m http.server in _build/html, then http://localhost:8000/ and this chapter.";
      return;
    }
    const mb = bytes => (bytes / 1e6).toFixed(1) + " MB";
    status.textContent = `Press Sample: the first press downloads the runtime (${mb(CONFIG.runtime_bytes.wasm)}; ` +
      `${mb(CONFIG.runtime_bytes.webgpu)} for WebGPU) and the model (${mb(model.bytes)}) from this site.`;

    let busy = false;
    button.addEventListener("click", async () => {
      if (busy) return;
      const v = check();
      if (!v) { status.textContent = "Not sampled: fix the settings marked above."; return; }
      if (runtimeKind && backend.value === "wasm" && runtimeKind !== "wasm") {
        status.textContent = "Not sampled: this page has loaded the WebGPU runtime; reload the page to use WebAssembly.";
        return;
      }
      busy = true; button.disabled = true;
      const heun = sampler.value === "samples_heun";
      progress.max = v.steps; progress.value = 0;
      status.textContent = "Loading the runtime and the model\u2026";
      root.setAttribute("data-state", "running");
      try {
        const r = await sample({model: name, steps: v.steps, gam: v.gam, mu: v.mu, seed: v.seed,
          sampler: sampler.value, label: v.label, cfgScale: v.cfgScale, backend: backend.value,
          onStep: async (i, s) => {
            drawImage(canvX, s.xt); drawImage(canvG, s.x0hat);
            capX.textContent = `x_t at \u03c3 = ${s.sigPrev.toPrecision(3)}`;
            capG.textContent = `guess x\u03020 at \u03c3 = ${s.sig.toPrecision(3)}`;
            progress.value = i + 1;
            status.textContent = `step ${i + 1} of ${v.steps}`;
            await new Promise(done => requestAnimationFrame(() => setTimeout(done, 0)));   // let it draw
          }});
        const what = heun ? "samples_heun" : `samples, gam ${v.gam}, mu ${v.mu}`;
        status.textContent = `Done: ${v.steps} steps of ${what}, seed ${v.seed}` +
          (model.num_classes ? `, class ${v.label} (${model.class_names[v.label]}), guidance ${v.cfgScale}` : "") + ".";
        timing.textContent = `${r.passes} network passes, median ${r.msPerPass.toFixed(1)} ms each` +
          (r.batch === 2 ? ", each a batch of 2 (the class and the null class)" : "") +
          `; the first, with set-up, ${r.msFirst.toFixed(0)} ms; ${r.backend}.`;
        root.setAttribute("data-backend", r.backend);
        root.setAttribute("data-ms-per-pass", r.msPerPass.toFixed(2));
        root.setAttribute("data-state", "done");
      } catch (err) {
        status.textContent = "The sampler stopped: " + (err && err.message ? err.message : String(err));
        root.setAttribute("data-state", "failed");
      } finally {
        busy = false; button.disabled = false;
      }
    });
  }

  function init() {
    if (!document.getElementById("smallunet-live-css"))
      document.head.appendChild(el("style", {id: "smallunet-live-css", text: CSS}));
    document.querySelectorAll("div.smallunet-live").forEach(build);
  }

  window.smallunetLive = {sample, sampleSigmas, parse, config: CONFIG};
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
