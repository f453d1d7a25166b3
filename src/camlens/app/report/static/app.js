/* camlens report: a static page over a run's results (no framework, no network).
 * Data: window.CAMLENS_REPORT (data/report.js); maps at layer resolution in data/maps-NNNN.js,
 * loaded with a <script> tag when needed (fetch() of local files is blocked on file://).
 * Maps are upsampled here as camlens.app.runs.RunReader.map does: bilinear (align_corners=False)
 * per layer, min-max normalised, layers averaged and normalised again. */
(function () {
  "use strict";
  var D = window.CAMLENS_REPORT;
  var N = D.images.id.length;
  var PAGE = 48;
  var PALETTE = ["#2f6fdb", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d", "#d4ac0d"];
  var HAS_LABELS = D.images.label.some(function (v) { return v !== null; });
  var state = { method: D.methods[0], sort: "index", order: "asc", cls: "", correct: "", rangeMetric: "", min: "", max: "", page: 0 };
  var list = [];
  var current = null;

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) { e.setAttribute(k, attrs[k]); }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function svgEl(tag, attrs) {
    var e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (var k in attrs || {}) { e.setAttribute(k, attrs[k]); }
    return e;
  }
  function fmt(v) {
    if (v === null || v === undefined) { return "–"; }
    var a = Math.abs(v);
    return a !== 0 && (a < 0.001 || a >= 1e5) ? v.toExponential(2) : (a >= 100 ? v.toFixed(1) : v.toFixed(3));
  }
  function className(c) {
    if (c === null || c === undefined) { return "–"; }
    return D.classes && D.classes[c] !== undefined ? D.classes[c] : String(c);
  }
  function isCorrect(k) {
    var l = D.images.label[k], p = D.images.pred[k];
    return l === null || p === null ? null : l === p;
  }
  function metricValue(key, k, method) {
    if (key === "index") { return k; }
    if (key === "score") { return D.images.score[k]; }
    if (key === "disagreement") { return D.disagreement ? D.disagreement[k] : null; }
    return D.values[method || state.method][key][k];
  }

  // ------------------------------------------------------------------ maps
  var shards = {}, pending = {};
  window.camlensMapsLoaded = function (s, payload) {
    shards[s] = payload;
    var cbs = pending[s] || [];
    delete pending[s];
    cbs.forEach(function (cb) { cb(); });
  };
  function withMaps(k, cb) {
    if (!D.maps) { return; }
    var s = Math.floor(k / D.maps.shard);
    if (shards[s]) { cb(); return; }
    if (!pending[s]) {
      pending[s] = [];
      var tag = el("script", { src: "data/maps-" + ("000" + s).slice(-4) + ".js" });
      document.body.appendChild(tag);
    }
    pending[s].push(cb);
  }
  function rawLayers(k, method) {
    var s = Math.floor(k / D.maps.shard);
    var enc = shards[s][method][k - s * D.maps.shard];
    return enc.map(function (b64, j) {
      var bin = atob(b64), n = bin.length / 2, out = new Float32Array(n);
      for (var i = 0; i < n; i++) { out[i] = (bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8)) / 65535; }
      return { h: D.maps.sizes[j][0], w: D.maps.sizes[j][1], v: out };
    });
  }
  function normalise(a) {
    var lo = Infinity, hi = -Infinity, i;
    for (i = 0; i < a.length; i++) { if (a[i] < lo) { lo = a[i]; } if (a[i] > hi) { hi = a[i]; } }
    var d = hi - lo;
    for (i = 0; i < a.length; i++) { a[i] = d > 0 ? (a[i] - lo) / d : 0; }
    return a;
  }
  function upsample(m, H, W) {
    var out = new Float32Array(H * W), sy = m.h / H, sx = m.w / W;
    for (var y = 0; y < H; y++) {
      var fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), m.h - 1), y0 = Math.floor(fy), y1 = Math.min(y0 + 1, m.h - 1), ty = fy - y0;
      for (var x = 0; x < W; x++) {
        var fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), m.w - 1), x0 = Math.floor(fx), x1 = Math.min(x0 + 1, m.w - 1), tx = fx - x0;
        var a = m.v[y0 * m.w + x0], b = m.v[y0 * m.w + x1], c = m.v[y1 * m.w + x0], d = m.v[y1 * m.w + x1];
        out[y * W + x] = (a * (1 - tx) + b * tx) * (1 - ty) + (c * (1 - tx) + d * tx) * ty;
      }
    }
    return out;
  }
  function cam(k, method, H, W) {
    var layers = rawLayers(k, method).map(function (m) { return normalise(upsample(m, H, W)); });
    if (layers.length === 1) { return layers[0]; }
    var out = new Float32Array(H * W);
    layers.forEach(function (l) { for (var i = 0; i < out.length; i++) { out[i] += l[i] / layers.length; } });
    return normalise(out);
  }
  function jet(t) {
    function c(v) { return Math.round(255 * Math.min(1, Math.max(0, v))); }
    return [c(1.5 - Math.abs(4 * t - 3)), c(1.5 - Math.abs(4 * t - 2)), c(1.5 - Math.abs(4 * t - 1))];
  }
  function paint(canvas, k, method) {
    withMaps(k, function () {
      var W = canvas.width, H = canvas.height, v = cam(k, method, H, W);
      var ctx = canvas.getContext("2d"), img = ctx.createImageData(W, H);
      for (var i = 0; i < v.length; i++) {
        var c = jet(v[i]);
        img.data[4 * i] = c[0]; img.data[4 * i + 1] = c[1]; img.data[4 * i + 2] = c[2]; img.data[4 * i + 3] = 255;
      }
      ctx.putImageData(img, 0, 0);
      canvas.dataset.painted = method;
    });
  }
  function stack(k, method, thumb, size) {
    var box = el("div", { "class": "stack" });
    if (D.inputSize) { box.style.aspectRatio = D.inputSize[1] + " / " + D.inputSize[0]; }
    if (D.images.img[k]) {
      box.appendChild(el("img", { src: (thumb ? "thumb/" : "img/") + k + ".jpg", loading: "lazy", alt: D.images.id[k] }));
    } else {
      box.appendChild(el("div", { "class": "none" }, "image file not found"));
    }
    if (method && D.maps) {
      var cv = el("canvas", { width: size, height: size, "data-method": method });
      box.appendChild(cv);
      paint(cv, k, method);
    }
    var boxes = D.images.boxes[k];
    if (!thumb && boxes && D.inputSize) {
      var svg = svgEl("svg", { viewBox: "0 0 " + D.inputSize[1] + " " + D.inputSize[0], preserveAspectRatio: "none" });
      boxes.forEach(function (b) {
        svg.appendChild(svgEl("rect", { x: b[0], y: b[1], width: b[2] - b[0], height: b[3] - b[1], fill: "none", stroke: "#fff", "stroke-width": 2, "vector-effect": "non-scaling-stroke" }));
      });
      box.appendChild(svg);
    }
    return box;
  }

  // ------------------------------------------------------------------ overview
  function overview() {
    var root = $("overview");
    if (root.dataset.done) { return; }
    root.dataset.done = "1";
    var facts = N + " images, model " + (D.model || "?") + ", explained class: " + D.target;
    if (HAS_LABELS) {
      var ok = 0;
      for (var k = 0; k < N; k++) { if (isCorrect(k)) { ok++; } }
      facts += ", top-1 accuracy " + (100 * ok / N).toFixed(1) + "%";
    }
    if (D.errors.length) { facts += ", " + D.errors.length + " unreadable image(s)"; }
    root.appendChild(el("h2", {}, "Per-method metrics (mean over images)"));
    root.appendChild(el("p", {}, facts));
    var wrap = el("div", { "class": "table-wrap" }), t = el("table", { id: "summary" }), tr = el("tr");
    tr.appendChild(el("th", {}, "method"));
    tr.appendChild(el("th", {}, "images"));
    D.metrics.forEach(function (m) { tr.appendChild(el("th", { title: m.desc }, m.name + (m.higher ? " ↑" : " ↓"))); });
    t.appendChild(tr);
    var best = {};
    D.metrics.forEach(function (m) {
      D.summary.forEach(function (r) {
        if (r.method === D.baseline || r[m.name] === null) { return; }
        if (best[m.name] === undefined || (m.higher ? r[m.name] > best[m.name] : r[m.name] < best[m.name])) { best[m.name] = r[m.name]; }
      });
    });
    D.summary.forEach(function (r) {
      var row = el("tr", r.method === D.baseline ? { "class": "baseline" } : {});
      row.appendChild(el("td", {}, r.method === D.baseline ? "image-centre baseline" : r.method));
      row.appendChild(el("td", {}, String(r.images)));
      D.metrics.forEach(function (m) {
        var win = r.method !== D.baseline && r[m.name] !== null && r[m.name] === best[m.name];
        row.appendChild(el("td", win ? { "class": "best" } : {}, fmt(r[m.name])));
      });
      t.appendChild(row);
    });
    wrap.appendChild(t);
    root.appendChild(wrap);
    root.appendChild(el("p", { "class": "note" }, "↑ higher is better, ↓ lower is better; bold: the best method."));
    var plots = el("div", { "class": "plots" });
    var names = D.methods.concat(D.baseline ? [D.baseline] : []);
    (D.curves || []).forEach(function (c) { plots.appendChild(curvePlot(c, names)); });
    D.metrics.forEach(function (m) { plots.appendChild(histogram(m, names)); });
    if (HAS_LABELS) {
      var pg = D.metrics.filter(function (m) { return m.name === "pointing_game"; })[0];
      if (pg) { plots.appendChild(perClass("pointing-game accuracy per class (lowest 20)", names, function (k, meth) { return D.values[meth].pointing_game[k]; })); }
      plots.appendChild(perClass("top-1 accuracy per class (lowest 20)", ["model"], function (k) { return isCorrect(k) ? 1 : 0; }));
    }
    root.appendChild(plots);
    if (D.errors.length) {
      root.appendChild(el("h2", {}, "Images that could not be read (not in the gallery)"));
      var ul = el("ul", { id: "errors" });
      D.errors.forEach(function (e) { ul.appendChild(el("li", {}, e.image_id + ": " + e.reason)); });
      root.appendChild(ul);
    }
  }
  function legend(names) {
    var lg = el("div", { "class": "legend" });
    names.forEach(function (n, i) {
      var s = el("span"), sw = el("i");
      sw.style.background = PALETTE[i % PALETTE.length];
      s.appendChild(sw);
      s.appendChild(document.createTextNode(n === D.baseline ? "centre baseline" : n));
      lg.appendChild(s);
    });
    return lg;
  }
  function histogram(m, names) {
    var box = el("div", { "class": "plot" }), bins = 20, lo = Infinity, hi = -Infinity;
    box.appendChild(el("h3", { title: m.desc }, "distribution of " + m.name + (m.higher ? " (↑ better)" : " (↓ better)")));
    names.forEach(function (n) { D.values[n][m.name].forEach(function (v) { if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }); });
    if (lo === Infinity) { box.appendChild(el("p", {}, "no values")); return box; }
    if (hi === lo) { hi = lo + 1; }
    var counts = names.map(function (n) {
      var c = new Array(bins).fill(0), total = 0;
      D.values[n][m.name].forEach(function (v) { if (v !== null) { c[Math.min(bins - 1, Math.floor((v - lo) / (hi - lo) * bins))]++; total++; } });
      return c.map(function (x) { return total ? x / total : 0; });
    });
    var top = Math.max.apply(null, counts.map(function (c) { return Math.max.apply(null, c); })) || 1;
    var W = 300, H = 150, L = 30, B = 20, svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, role: "img" });
    svg.appendChild(svgEl("line", { x1: L, y1: H - B, x2: W - 4, y2: H - B, stroke: "#999" }));
    svg.appendChild(svgEl("line", { x1: L, y1: 4, x2: L, y2: H - B, stroke: "#999" }));
    counts.forEach(function (c, i) {
      var pts = [];
      c.forEach(function (f, b) {
        var x0 = L + (W - 4 - L) * b / bins, x1 = L + (W - 4 - L) * (b + 1) / bins, y = H - B - (H - B - 6) * f / top;
        pts.push(x0 + "," + y, x1 + "," + y);
      });
      svg.appendChild(svgEl("polyline", { points: pts.join(" "), fill: "none", stroke: PALETTE[i % PALETTE.length], "stroke-width": 1.5 }));
    });
    [[lo, L, "start"], [hi, W - 4, "end"]].forEach(function (a) {
      var tx = svgEl("text", { x: a[1], y: H - 5, "font-size": 10, "text-anchor": a[2] });
      tx.textContent = fmt(a[0]);
      svg.appendChild(tx);
    });
    var ty = svgEl("text", { x: 2, y: 12, "font-size": 10 });
    ty.textContent = (100 * top).toFixed(0) + "%";
    svg.appendChild(ty);
    box.appendChild(svg);
    box.appendChild(legend(names));
    return box;
  }
  function curvePlot(c, names) {
    var deleting = c.name.indexOf("deletion") === 0, m = D.metrics.filter(function (x) { return x.name === c.metric; })[0];
    var box = el("div", { "class": "plot curve", "data-curve": c.name });
    box.appendChild(el("h3", { title: "mean over images of the per-image curves stored by the run" },
      "mean " + (deleting ? "deletion" : "insertion") + " curve" + (m ? (m.higher ? " (AUC ↑ better)" : " (AUC ↓ better)") : "")));
    var shown = names.filter(function (n) { return c.methods[n]; }), top = 0;
    shown.forEach(function (n) { c.methods[n].mean.forEach(function (v) { if (v !== null) { top = Math.max(top, v); } }); });
    top = top > 0 ? Math.min(1, Math.ceil(top * 10) / 10) : 1;
    var W = 300, H = 150, L = 30, B = 20, R = 4, svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, role: "img" });
    svg.appendChild(svgEl("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#999" }));
    svg.appendChild(svgEl("line", { x1: L, y1: 4, x2: L, y2: H - B, stroke: "#999" }));
    shown.forEach(function (n) {
      var i = names.indexOf(n), pts = [];
      c.methods[n].mean.forEach(function (v, j) {
        if (v === null) { return; }
        pts.push((L + (W - R - L) * c.x[j]).toFixed(1) + "," + (H - B - (H - B - 6) * v / top).toFixed(1));
      });
      var line = svgEl("polyline", { points: pts.join(" "), fill: "none", stroke: PALETTE[i % PALETTE.length], "stroke-width": 1.5, "data-method": n });
      var tip = svgEl("title");
      tip.textContent = (n === D.baseline ? "centre baseline" : n) + " (" + c.methods[n].images + " images)";
      line.appendChild(tip);
      svg.appendChild(line);
    });
    [["0", L, "start"], [deleting ? "fraction of pixels deleted → 1" : "fraction of pixels inserted → 1", W - R, "end"]].forEach(function (a) {
      var tx = svgEl("text", { x: a[1], y: H - 5, "font-size": 10, "text-anchor": a[2] });
      tx.textContent = a[0];
      svg.appendChild(tx);
    });
    var ty = svgEl("text", { x: 2, y: 12, "font-size": 10 });
    ty.textContent = "p " + top.toFixed(1);
    svg.appendChild(ty);
    box.appendChild(svg);
    box.appendChild(legend(shown));
    return box;
  }
  function perClass(title, names, value) {
    var box = el("div", { "class": "plot" }), by = {};
    box.appendChild(el("h3", {}, title));
    for (var k = 0; k < N; k++) {
      var c = D.images.label[k];
      if (c === null) { continue; }
      by[c] = by[c] || names.map(function () { return [0, 0]; });
      names.forEach(function (n, i) { var v = value(k, n); if (v !== null) { by[c][i][0] += v; by[c][i][1]++; } });
    }
    var rows = Object.keys(by).map(function (c) { return [c, by[c].map(function (s) { return s[1] ? s[0] / s[1] : 0; })]; });
    rows.sort(function (a, b) { return a[1][0] - b[1][0]; });
    rows = rows.slice(0, 20);
    var W = 300, bar = names.length === 1 ? 9 : 6, gap = 4, L = 90, rowH = names.length * bar + gap, H = rows.length * rowH + 16;
    var svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, role: "img" });
    rows.forEach(function (r, i) {
      var y = i * rowH, tx = svgEl("text", { x: L - 4, y: y + rowH / 2 + 2, "font-size": 9, "text-anchor": "end" });
      tx.textContent = className(Number(r[0])).slice(0, 16);
      svg.appendChild(tx);
      r[1].forEach(function (v, j) {
        svg.appendChild(svgEl("rect", { x: L, y: y + j * bar, width: Math.max(0.5, (W - L - 30) * v), height: bar - 1, fill: PALETTE[j % PALETTE.length] }));
      });
    });
    var ax = svgEl("text", { x: W - 30, y: H - 3, "font-size": 9, "text-anchor": "middle" });
    ax.textContent = "1.0";
    svg.appendChild(ax);
    box.appendChild(svg);
    if (names.length > 1) { box.appendChild(legend(names)); }
    return box;
  }

  // ------------------------------------------------------------------ gallery
  function setupControls() {
    D.methods.forEach(function (m) { $("method").appendChild(el("option", { value: m }, m)); });
    var sorts = [["index", "run order"], ["score", "score of the explained class"]];
    if (D.disagreement) { sorts.push(["disagreement", "disagreement between methods"]); }
    D.metrics.forEach(function (m) { sorts.push([m.name, m.name + (m.higher ? " ↑" : " ↓")]); $("range-metric").appendChild(el("option", { value: m.name }, m.name)); });
    sorts.forEach(function (s) { $("sort").appendChild(el("option", { value: s[0] }, s[1])); });
    var seen = {};
    D.images.label.forEach(function (c) { if (c !== null) { seen[c] = 1; } });
    Object.keys(seen).map(Number).sort(function (a, b) { return a - b; }).forEach(function (c) {
      $("class-filter").appendChild(el("option", { value: c }, className(c)));
    });
    if (!HAS_LABELS) { $("class-filter").disabled = true; $("correct-filter").disabled = true; }
    var ids = { method: "method", sort: "sort", order: "order", cls: "class-filter", correct: "correct-filter", rangeMetric: "range-metric", min: "range-min", max: "range-max" };
    Object.keys(ids).forEach(function (key) {
      $(ids[key]).addEventListener(key === "min" || key === "max" ? "input" : "change", function (ev) {
        state[key] = ev.target.value;
        state.page = 0;
        gallery();
      });
    });
    $("prev-page").addEventListener("click", function () { turn(-1); });
    $("next-page").addEventListener("click", function () { turn(1); });
  }
  function compute() {
    var out = [], lo = state.min === "" ? -Infinity : Number(state.min), hi = state.max === "" ? Infinity : Number(state.max);
    for (var k = 0; k < N; k++) {
      if (state.cls !== "" && D.images.label[k] !== Number(state.cls)) { continue; }
      if (state.correct !== "") { var c = isCorrect(k); if (c === null || c !== (state.correct === "correct")) { continue; } }
      if (state.rangeMetric) { var v = metricValue(state.rangeMetric, k); if (v === null || v < lo || v > hi) { continue; } }
      out.push(k);
    }
    var sign = state.order === "desc" ? -1 : 1;
    out.sort(function (a, b) {
      var va = metricValue(state.sort, a), vb = metricValue(state.sort, b);
      if (va === null || vb === null) { return va === vb ? a - b : (va === null ? 1 : -1); }  // missing values last
      return va === vb ? a - b : sign * (va - vb);
    });
    return out;
  }
  function pages() { return Math.max(1, Math.ceil(list.length / PAGE)); }
  function turn(d) {
    var p = Math.min(pages() - 1, Math.max(0, state.page + d));
    if (p !== state.page) { state.page = p; gallery(true); window.scrollTo(0, 0); }
  }
  function card(k) {
    var c = el("div", { "class": "card", tabindex: 0, "data-k": k, "data-id": D.images.id[k] });
    c.appendChild(stack(k, state.method, true, 64));
    c.appendChild(el("div", { "class": "name", title: D.images.id[k] }, D.images.id[k]));
    var ok = isCorrect(k), f = el("div", { "class": "facts" });
    if (D.images.label[k] !== null) { f.appendChild(document.createTextNode("label " + className(D.images.label[k]) + " · ")); }
    f.appendChild(el("span", ok === null ? {} : { "class": ok ? "correct" : "wrong" }, "pred " + className(D.images.pred[k])));
    f.appendChild(el("br"));
    f.appendChild(document.createTextNode("score " + fmt(D.images.score[k])));
    if (state.sort !== "index" && state.sort !== "score") {
      f.appendChild(document.createTextNode(" · " + state.sort + " "));
      f.appendChild(el("span", { "class": "sort-value" }, fmt(metricValue(state.sort, k))));
    }
    c.appendChild(f);
    c.addEventListener("click", function () { location.hash = "image/" + k; });
    c.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { location.hash = "image/" + k; } });
    return c;
  }
  function gallery(keepList) {
    if (!keepList) { list = compute(); }
    state.page = Math.min(state.page, pages() - 1);
    var cards = $("cards"), start = state.page * PAGE, frag = document.createDocumentFragment();
    cards.textContent = "";
    list.slice(start, start + PAGE).forEach(function (k) { frag.appendChild(card(k)); });
    cards.appendChild(frag);
    $("count").textContent = list.length + " of " + N + " images" + (list.length > PAGE ? " (page " + (state.page + 1) + " of " + pages() + "; ← → turn pages)" : "");
    $("page-info").textContent = (state.page + 1) + " / " + pages();
    $("prev-page").disabled = state.page === 0;
    $("next-page").disabled = state.page >= pages() - 1;
  }

  // ------------------------------------------------------------------ image view
  function view(k) {
    current = k;
    $("view-title").textContent = D.images.id[k];
    var ok = isCorrect(k), facts = [];
    if (D.images.label[k] !== null) { facts.push("label " + className(D.images.label[k])); }
    facts.push("prediction " + className(D.images.pred[k]) + (ok === null ? "" : ok ? " (correct)" : " (wrong)"));
    facts.push("explained class " + className(D.images.cls[k]) + " (" + D.target + "), score " + fmt(D.images.score[k]));
    if (D.disagreement) { facts.push("disagreement between methods " + fmt(D.disagreement[k])); }
    $("view-facts").textContent = facts.join(" · ");
    var top = D.top5 ? D.top5[k] : null, ol = $("view-top5");
    ol.textContent = "";
    $("view-top5-wrap").hidden = !top;
    (top || []).forEach(function (cp) {
      var named = D.classes && D.classes[cp[0]] !== undefined;
      var li = el("li", { "data-class": cp[0], "data-p": cp[1] }), bar = el("span", { "class": "bar" });
      if (cp[0] === D.images.label[k]) { li.className = "is-label"; li.title = "the ground-truth label"; }
      bar.style.width = (100 * cp[1]).toFixed(1) + "%";
      li.appendChild(bar);
      li.appendChild(el("span", { "class": "cls" }, named ? D.classes[cp[0]] + " (" + cp[0] + ")" : "class " + cp[0]));
      li.appendChild(el("span", { "class": "p" }, (100 * cp[1]).toFixed(1) + "%"));
      ol.appendChild(li);
    });
    var panels = $("panels"), size = D.inputSize ? Math.min(224, Math.max(D.inputSize[0], D.inputSize[1])) : 224;
    panels.textContent = "";
    var p0 = el("div", { "class": "panel" });
    p0.appendChild(el("h3", {}, "image" + (D.images.boxes[k] ? " (boxes)" : "")));
    p0.appendChild(stack(k, null, false, size));
    panels.appendChild(p0);
    D.methods.forEach(function (m) {
      var p = el("div", { "class": "panel", "data-method": m });
      p.appendChild(el("h3", {}, m));
      var s = stack(k, m, false, size);
      p.appendChild(s);
      s.addEventListener("mousemove", function (ev) { hover(ev, s, k, m); });
      s.addEventListener("mouseleave", function () { $("hover-value").textContent = ""; });
      panels.appendChild(p);
    });
    var t = $("view-metrics"), tr = el("tr");
    t.textContent = "";
    tr.appendChild(el("th", {}, "method"));
    D.metrics.forEach(function (m) { tr.appendChild(el("th", { title: m.desc }, m.name + (m.higher ? " ↑" : " ↓"))); });
    t.appendChild(tr);
    D.methods.concat(D.baseline ? [D.baseline] : []).forEach(function (n) {
      var row = el("tr", n === D.baseline ? { "class": "baseline" } : {});
      row.appendChild(el("td", {}, n === D.baseline ? "image-centre baseline" : n));
      D.metrics.forEach(function (m) { row.appendChild(el("td", {}, fmt(D.values[n][m.name][k]))); });
      t.appendChild(row);
    });
  }
  function hover(ev, s, k, method) {
    if (!D.maps) { return; }
    var r = s.getBoundingClientRect(), fx = (ev.clientX - r.left) / r.width, fy = (ev.clientY - r.top) / r.height;
    withMaps(k, function () {
      var m = rawLayers(k, method)[0], i = Math.min(m.h - 1, Math.floor(fy * m.h)), j = Math.min(m.w - 1, Math.floor(fx * m.w));
      var x = D.inputSize ? Math.floor(fx * D.inputSize[1]) : null, y = D.inputSize ? Math.floor(fy * D.inputSize[0]) : null;
      $("hover-value").textContent = method + ": map cell (" + i + ", " + j + ") of " + m.h + "x" + m.w + " = " + m.v[i * m.w + j].toFixed(3) + (x === null ? "" : " at pixel (" + x + ", " + y + ")");
    });
  }
  function step(d) {
    var seq = list.indexOf(current) >= 0 ? list : Array.from({ length: N }, function (_, i) { return i; });
    var at = seq.indexOf(current), next = seq[Math.min(seq.length - 1, Math.max(0, at + d))];
    if (next !== undefined && next !== current) { location.hash = "image/" + next; }
  }

  // ------------------------------------------------------------------ routing and keys
  function route() {
    var h = location.hash.replace(/^#/, "") || "overview", m = /^image\/(\d+)$/.exec(h);
    ["overview", "gallery", "view"].forEach(function (id) { $(id).hidden = true; });
    $("tab-overview").className = h === "overview" ? "active" : "";
    $("tab-gallery").className = h === "gallery" || m ? "active" : "";
    if (m && Number(m[1]) < N) { $("view").hidden = false; view(Number(m[1])); return; }
    if (h === "gallery") { $("gallery").hidden = false; if (!$("cards").firstChild) { gallery(); } return; }
    $("overview").hidden = false;
    overview();
  }
  document.addEventListener("keydown", function (ev) {
    var tag = (ev.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || ev.altKey || ev.ctrlKey || ev.metaKey) { return; }
    if (!$("view").hidden) {
      if (ev.key === "ArrowRight" || ev.key === "j") { step(1); ev.preventDefault(); }
      else if (ev.key === "ArrowLeft" || ev.key === "k") { step(-1); ev.preventDefault(); }
      else if (ev.key === "Escape") { location.hash = "gallery"; }
    } else if (!$("gallery").hidden) {
      if (ev.key === "ArrowRight") { turn(1); } else if (ev.key === "ArrowLeft") { turn(-1); }
    }
  });
  $("opacity").addEventListener("input", function (ev) {
    document.documentElement.style.setProperty("--overlay-opacity", String(ev.target.value / 100));
    $("opacity-value").textContent = ev.target.value + "%";
  });
  $("back").addEventListener("click", function () { location.hash = "gallery"; });
  $("view-prev").addEventListener("click", function () { step(-1); });
  $("view-next").addEventListener("click", function () { step(1); });
  $("title").textContent = D.title;
  document.title = D.title;
  setupControls();
  list = compute();
  window.addEventListener("hashchange", route);
  route();
})();
