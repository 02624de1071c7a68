// streamscore live opinion page: reads /opinion/stream/{id} (server-sent events) and draws
// the positive share per subject (SVG), volume beneath, model changes, recent tweets.
// Tweet texts are untrusted: they only ever go into textContent.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#39424e", "#2f6fdf", "#d9822b", "#8e44ad", "#16a085", "#c0392b", "#7f8c8d",
    "#b7950b", "#1abc9c", "#e84393", "#6c5ce7", "#00a8ff", "#e1b12c", "#44bd32", "#40739e",
    "#c23616", "#8c7ae6", "#0097e6", "#273c75", "#353b48", "#718093"];
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, text) => {
    const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const time = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const pct = (x) => (100 * x).toFixed(1) + "%";

  if (document.body.classList.contains("login")) {
    if (new URLSearchParams(location.search).has("failed")) $("failed").hidden = false;
    return;
  }

  let source = null;
  let last = null; // previous snapshot, for the throughput

  function facts(s) {
    const status = $("status");
    status.textContent = s.status;
    status.className = "badge " + s.status;
    $("model").textContent = s.model_version || "—";
    $("lag").textContent = s.lag.toLocaleString();
    $("late").textContent = s.opinion ? s.opinion.late_records.toLocaleString() : "—";
    if (last && last.id === s.id && s.now_ms > last.now_ms && s.scored >= last.scored) {
      const rate = (s.scored - last.scored) * 1000 / (s.now_ms - last.now_ms);
      $("throughput").textContent = Math.round(rate).toLocaleString() + " records/s";
    }
    $("reason").hidden = !s.reason;
    $("reason").textContent = s.reason || "";
  }

  function chart(o) {
    const svg = $("chart");
    svg.replaceChildren();
    const W = 800, top = 12, shareH = 180, volTop = 215, volH = 75;
    const all = o.subjects[0].windows;
    const starts = new Set();
    o.subjects.forEach((s) => s.windows.forEach((w) => starts.add(w.start_ms)));
    const xs = [...starts].sort((a, b) => a - b);
    svg.setAttribute("data-windows", xs.length);
    svg.setAttribute("data-total", all.reduce((n, w) => n + w.positive + w.negative, 0));
    for (const y of [0, 0.5, 1]) {
      const py = top + shareH * (1 - y);
      svg.append(el("svg:line", { x1: 0, x2: W, y1: py, y2: py, stroke: "#e3e6ea" }));
      svg.append(el("svg:text", { x: 4, y: py - 2, "font-size": 10, fill: "#6a7380" }, pct(y)));
    }
    if (xs.length === 0) {
      svg.append(el("svg:text", { x: W / 2, y: 150, "text-anchor": "middle", fill: "#6a7380" }, "waiting for tweets…"));
      return;
    }
    const first = xs[0], span = Math.max(o.window_ms, xs[xs.length - 1] - first);
    const slot = W / (span / o.window_ms + 1);
    const x = (start) => slot / 2 + (start - first) / o.window_ms * slot;
    const maxVol = Math.max(1, ...all.map((w) => w.positive + w.negative));
    for (const w of all) {
      const n = w.positive + w.negative, h = volH * n / maxVol, hp = volH * w.positive / maxVol;
      const bx = x(w.start_ms) - slot * 0.35, bw = slot * 0.7;
      svg.append(el("svg:rect", { x: bx, y: volTop + volH - h, width: bw, height: h - hp, fill: "#c2413b", opacity: w.closed ? 0.85 : 0.45 }));
      svg.append(el("svg:rect", { x: bx, y: volTop + volH - hp, width: bw, height: hp, fill: "#1f8a4c", opacity: w.closed ? 0.85 : 0.45 }));
    }
    svg.append(el("svg:text", { x: 4, y: volTop - 3, "font-size": 10, fill: "#6a7380" }, "volume (max " + maxVol + " per window)"));
    o.subjects.forEach((s, i) => {
      const pts = s.windows.filter((w) => w.positive + w.negative > 0)
        .map((w) => x(w.start_ms).toFixed(1) + "," + (top + shareH * (1 - w.positive_share)).toFixed(1));
      if (pts.length === 0) return;
      const color = COLORS[i % COLORS.length];
      svg.append(el("svg:polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": i === 0 ? 2.5 : 1.8, "data-subject": s.name }));
      for (const p of pts) {
        const [cx, cy] = p.split(",");
        svg.append(el("svg:circle", { cx, cy, r: 2.5, fill: color }));
      }
    });
    // The first mark is the version the deployment started with: only changes are drawn.
    for (const m of o.model_marks.slice(1)) {
      if (m.at_ms < first) continue;
      const mx = x(first + Math.floor((m.at_ms - first) / o.window_ms) * o.window_ms) - slot / 2;
      svg.append(el("svg:line", { x1: mx, x2: mx, y1: top, y2: volTop + volH, stroke: "#6a7380", "stroke-dasharray": "4 3", class: "model-mark" }));
      svg.append(el("svg:text", { x: mx + 3, y: top + 10, "font-size": 10, fill: "#6a7380" }, "model " + m.version));
    }
    svg.append(el("svg:text", { x: 4, y: 298, "font-size": 10, fill: "#6a7380" }, time(first)));
    svg.append(el("svg:text", { x: W - 4, y: 298, "font-size": 10, fill: "#6a7380", "text-anchor": "end" }, time(xs[xs.length - 1])));
  }

  function legend(o) {
    const box = $("legend");
    box.replaceChildren();
    o.subjects.forEach((s, i) => {
      const item = el("span", { title: s.keywords.join(", ") });
      const swatch = el("i");
      swatch.style.background = COLORS[i % COLORS.length];
      item.append(swatch, document.createTextNode(s.name === "*" ? "all tweets" : s.name));
      box.append(item);
    });
  }

  function windows(o) {
    const body = $("windows").tBodies[0];
    body.replaceChildren();
    for (const s of o.subjects) {
      for (const w of s.windows.slice(-5).reverse()) {
        const tr = el("tr", { "data-subject": s.name, "data-start": w.start_ms, "data-positive": w.positive, "data-negative": w.negative, "data-closed": w.closed });
        tr.append(el("td", {}, s.name === "*" ? "all" : s.name),
          el("td", {}, time(w.start_ms) + (w.closed ? "" : " (open)")),
          el("td", { class: "pos" }, w.positive), el("td", { class: "neg" }, w.negative),
          el("td", {}, pct(w.positive_share)), el("td", {}, w.mean_positive_probability.toFixed(3)));
        body.append(tr);
      }
    }
  }

  function recent(id, samples) {
    const ul = $(id);
    ul.replaceChildren();
    for (const t of samples) {
      const li = el("li");
      li.append(el("span", { class: "p" }, "P(+) " + t.positive_probability.toFixed(2)), document.createTextNode(t.text));
      ul.append(li);
    }
  }

  function render(s) {
    facts(s);
    const o = s.opinion;
    if (o) {
      $("window").textContent = "(" + o.window_ms / 1000 + " s windows)";
      legend(o);
      chart(o);
      windows(o);
      recent("recent-positive", o.recent_positive);
      recent("recent-negative", o.recent_negative);
    }
    last = s;
    const main = $("opinion");
    main.setAttribute("data-updates", Number(main.getAttribute("data-updates")) + 1);
    $("connection").textContent = "live · updated " + time(s.now_ms);
  }

  function follow(id) {
    if (source) source.close();
    last = null;
    source = new EventSource("/opinion/stream/" + encodeURIComponent(id));
    source.addEventListener("snapshot", (e) => render(JSON.parse(e.data)));
    source.onerror = () => { $("connection").textContent = "reconnecting…"; };
  }

  fetch("/opinion/deployments", { credentials: "same-origin" })
    .then((r) => { if (r.status === 401) { location.reload(); } return r.json(); })
    .then((list) => {
      const select = $("deployment");
      for (const d of list) select.append(el("option", { value: d.id }, d.name));
      const wanted = new URLSearchParams(location.search).get("deployment");
      if (wanted && list.some((d) => d.id === wanted)) select.value = wanted;
      select.addEventListener("change", () => follow(select.value));
      if (select.value) follow(select.value);
      else $("connection").textContent = "no deployment yet";
    })
    .catch(() => { $("connection").textContent = "cannot reach the daemon"; });
})();
