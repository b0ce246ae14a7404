"""One self-contained HTML page of ``charlm.report.build``'s data: inline CSS and JS, no network.

Sections: the text coloured by surprisal (legend, bits/char; hover: top-k predictions), the same
text coloured by any unit's state (red positive, blue negative; a ranked list of units that track
text features, each clickable), gate saturation scatter plots (LSTM/GRU), training curves and the
``charlm info`` summary. The activations travel as one byte per value (base64, series-major: unit
after unit, ``span`` positions each), scaled by max(1, max|value|) of their series.
"""

from __future__ import annotations

import base64
import html
import json

import numpy as np

from .config import LN2
from .report import FEATURES


def _quantize(data: dict) -> tuple[str, list, list]:
    """(base64 of uint8 (series, span), series labels [layer, state, unit], their scales)."""
    act = data["activations"]
    blocks, labels, scales = [], [], []
    for layer in act["layers"]:
        for st in act["states"]:
            a = np.asarray(layer[st], np.float64).T                     # (H, span)
            sc = np.maximum(1.0, np.abs(a).max(1, initial=0.0))          # (H,)
            q = np.rint((a / sc[:, None] + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
            blocks.append(q)
            labels += [[layer["layer"], st, u] for u in range(a.shape[0])]
            scales += [round(float(s), 5) for s in sc]
    raw = np.concatenate(blocks).tobytes() if blocks else b""
    return base64.b64encode(raw).decode("ascii"), labels, scales


def page_data(data: dict) -> dict:
    """The compact JSON the page reads."""
    b64, labels, scales = _quantize(data)
    s = data["surprisal_bits"]
    pred = np.isfinite(s)
    ranked = [{**r, "r": round(r["r"], 3)} for r in data["ranked"]]
    return {
        "path": data["path"], "config": data["config"], "vocab": data["vocab"], "tokens": data["tokens"],
        "ids": np.asarray(data["ids"]).tolist(),
        "surprisal": [round(float(v), 4) if ok else None for v, ok in zip(s, pred, strict=True)],
        "bpc": data["bpc"], "predicted": data["predicted"],
        "top_ids": [row.tolist() if ok else [] for row, ok in zip(data["topk"]["ids"], pred, strict=True)],
        "top_p": [np.round(row, 4).tolist() if ok else [] for row, ok in zip(data["topk"]["probs"], pred,
                                                                                strict=True)],
        "act": {"b64": b64, "span": data["activations"]["span"], "series": labels, "scales": scales,
                "states": data["activations"]["states"], "layers": data["config"]["layers"],
                "hidden": data["config"]["hidden"]},
        "ranked": ranked, "features": list(FEATURES),
        "gates": [{"layer": g["layer"], "names": g["names"], "low": np.round(g["low"], 4).tolist(),
                   "high": np.round(g["high"], 4).tolist()} for g in data["gates"]],
        "curves": _curves(data["metrics"]),
        "summary_text": data["summary_text"],
    }


def _curves(metrics) -> dict:
    train, val = [], []
    for rec in metrics:
        step = rec.get("step")
        for key, out in (("train_loss", train), ("val_loss", val)):
            v = rec.get(key)
            if isinstance(v, (int, float)) and v == v and abs(v) != float("inf"):
                out.append([step, round(v / LN2, 5)])
    return {"train": train, "val": val}


def render(data: dict) -> str:
    """The page as a string."""
    blob = json.dumps(page_data(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    blob = blob.replace("<", "\\u003c")            # nothing inside <script> can close it
    title = html.escape(f"charlm inspect: {data['path']}")
    return (_PAGE.replace("%TITLE%", title).replace("%CSS%", _CSS).replace("%JS%", _JS)
            .replace("%DATA%", blob))


def write(data: dict, path) -> int:
    """Write the page to ``path``; returns its size in bytes."""
    from .safefile import atomic_write_bytes

    raw = render(data).encode("utf-8")
    atomic_write_bytes(path, raw)
    return len(raw)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; \
script-src 'unsafe-inline'; img-src data:">
<link rel="icon" href="data:,">
<title>%TITLE%</title>
<style>%CSS%</style></head>
<body>
<header><h1>charlm inspect</h1><div id="head"></div></header>
<section id="textsec">
  <div class="controls">
    <label>Colour by <select id="mode"><option value="surprisal">surprisal</option>
      <option value="neuron">neuron</option></select></label>
    <span id="neuronctl"><label>layer <select id="layer"></select></label>
      <label>state <select id="state"></select></label>
      <label>unit <input id="unit" type="number" min="0" value="0"></label></span>
    <span id="legend"></span>
  </div>
  <div id="note"></div>
  <div id="text"></div>
</section>
<section id="neurons"><h2>Interesting units</h2>
  <p class="hint">Units whose state correlates most with a text feature (Pearson r over the whole text).
  Click one to colour the text by it.</p>
  <table id="ranked"><thead><tr><th>#</th><th>layer</th><th>state</th><th>unit</th><th>feature</th>
  <th>r</th></tr></thead><tbody></tbody></table>
</section>
<section id="gatesec"><h2>Gate saturation</h2>
  <p class="hint">Each dot is one unit: the fraction of positions its gate is below 0.1 (x, left-saturated)
  and above 0.9 (y, right-saturated).</p><div id="gates"></div></section>
<section id="curvesec"><h2>Training curves</h2><div id="curves"></div></section>
<section id="summarysec"><h2>Model</h2><pre id="summary"></pre></section>
<div id="tip" role="tooltip"></div>
<script type="application/json" id="data">%DATA%</script>
<script>%JS%</script>
</body></html>
"""

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1100px;
 padding:12px 20px 40px;color:#222;background:#fafafa}
h1{font-size:20px;margin:4px 0}h2{font-size:16px;margin:22px 0 6px;border-bottom:1px solid #ddd}
#head{color:#555}#head b{color:#111}
section{background:#fff;border:1px solid #e4e4e4;border-radius:6px;padding:8px 14px;margin-top:12px}
.controls{display:flex;flex-wrap:wrap;gap:14px;align-items:center;margin-bottom:6px}
.controls label{white-space:nowrap}#unit{width:5em}
#text{font:13px/1.6 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:pre-wrap;
 word-break:break-all;max-height:560px;overflow:auto;border:1px solid #eee;padding:6px;background:#fff}
#text span.ch{border-radius:2px}
#text span.nl::before{content:'\\21b5';color:#999}
#text span.ch:hover{outline:1px solid #333}
#note{color:#777;font-size:12px;margin-bottom:4px}
#legend{display:inline-flex;align-items:center;gap:6px;font-size:12px}
#legend .bar{width:220px;height:12px;border:1px solid #ccc;display:inline-block}
#tip{position:fixed;display:none;pointer-events:none;background:#fff;border:1px solid #999;border-radius:4px;
 box-shadow:0 2px 8px rgba(0,0,0,.2);padding:6px 8px;font-size:12px;z-index:10;min-width:180px}
#tip table{border-collapse:collapse;width:100%}#tip td{padding:1px 4px}
#tip .sym{font-family:ui-monospace,Menlo,Consolas,monospace;background:#f3f3f3}
#tip .pbar{background:#4a7bd0;height:8px;display:inline-block}
#tip tr.hit td{font-weight:bold}
table#ranked{border-collapse:collapse;font-size:13px}
#ranked td,#ranked th{padding:2px 10px;border-bottom:1px solid #eee;text-align:left}
#ranked tbody tr{cursor:pointer}#ranked tbody tr:hover{background:#eef3ff}
#ranked tr.sel{background:#dde7ff}
.hint{color:#666;font-size:12px;margin:2px 0 6px}
#gates svg,#curves svg{margin:4px 10px 4px 0;background:#fff}
svg text{font:11px system-ui,sans-serif;fill:#333}
pre#summary{font-size:12px;overflow:auto}
"""

_JS = r"""
"use strict";
const D = JSON.parse(document.getElementById('data').textContent);
const $ = id => document.getElementById(id);
const N = D.tokens.length;
const A = (() => { const s = atob(D.act.b64), a = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) a[i] = s.charCodeAt(i); return a; })();
const SPAN = D.act.span;
const seriesIndex = {};
D.act.series.forEach((s, i) => { seriesIndex[s.join('/')] = i; });
const finite = D.surprisal.filter(v => v !== null).sort((a, b) => a - b);
const SMAX = Math.max(4, Math.ceil(finite.length ? finite[Math.floor(0.99 * (finite.length - 1))] : 4));

function surpColour(v) {
  if (v === null) return 'rgb(235,235,235)';
  const t = Math.min(1, v / SMAX);
  const r = 255, g = Math.round(255 - 190 * t), b = Math.round(255 - 230 * Math.min(1, t * 1.6));
  return `rgb(${r},${g},${Math.max(0, b)})`;
}
function actColour(a) {
  const m = Math.min(1, Math.abs(a));
  if (a >= 0) return `rgb(255,${Math.round(255 - 200 * m)},${Math.round(255 - 200 * m)})`;
  return `rgb(${Math.round(255 - 200 * m)},${Math.round(255 - 140 * m)},255)`;
}
function show(sym) {
  return sym === '\n' ? '\u21b5' : sym === ' ' ? '\u2423' : sym === '\t' ? '\u21e5' : sym === '' ? '\u00b7' : sym;
}
function esc(s) { return s.replace(/[&<>"]/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c])); }

// ---- header, text spans
$('head').innerHTML = `<b>${esc(D.path)}</b> &middot; ${D.config.cell} ${D.config.layers}&times;${D.config.hidden}` +
  ` &middot; ${N.toLocaleString()} characters &middot; <b>${D.bpc === null ? 'n/a' : D.bpc.toFixed(4)}</b>` +
  ` bits/char over ${D.predicted.toLocaleString()} predicted`;
const spans = new Array(N);
(() => { const frag = document.createDocumentFragment();
  for (let p = 0; p < N; p++) { const s = document.createElement('span');
    const t = D.tokens[p]; s.className = t === '\n' ? 'ch nl' : 'ch'; s.textContent = t; s.dataset.p = p;
    spans[p] = s; frag.appendChild(s); }
  $('text').appendChild(frag); })();

// ---- controls
for (let k = 0; k < D.act.layers; k++) $('layer').add(new Option(String(k), String(k)));
D.act.states.forEach(s => $('state').add(new Option(s === 'h' ? 'h (hidden)' : 'c (cell)', s)));
$('unit').max = D.act.hidden - 1;
let current = null;     // series index in neuron mode
function selected() {
  const u = Math.max(0, Math.min(D.act.hidden - 1, parseInt($('unit').value || '0', 10)));
  return seriesIndex[[parseInt($('layer').value, 10), $('state').value, u].join('/')];
}
function legend() {
  const stops = [];
  if ($('mode').value === 'surprisal') {
    for (let i = 0; i <= 10; i++) stops.push(surpColour(SMAX * i / 10));
    $('legend').innerHTML = '0 bits <span class="bar" style="background:linear-gradient(to right,' +
      `${stops.join(',')})"></span> ${SMAX}+ bits`;
  } else {
    for (let i = -10; i <= 10; i++) stops.push(actColour(i / 10));
    const sc = current === null ? 1 : D.act.scales[current];
    $('legend').innerHTML = `${(-sc).toFixed(2)} <span class="bar" style="background:linear-gradient(to right,` +
      `${stops.join(',')})"></span> +${sc.toFixed(2)}`;
  }
}
function actValue(si, p) { return A[si * SPAN + p] / 127.5 - 1; }
function paint() {
  const mode = $('mode').value;
  $('neuronctl').style.opacity = mode === 'neuron' ? 1 : 0.5;
  if (mode === 'surprisal') {
    for (let p = 0; p < N; p++) spans[p].style.backgroundColor = surpColour(D.surprisal[p]);
    $('note').textContent = 'Colour: surprisal -log2 p(character | everything before it). ' +
      'Hover a character for the top predictions.';
  } else {
    current = selected();
    for (let p = 0; p < N; p++)
      spans[p].style.backgroundColor = p < SPAN ? actColour(actValue(current, p)) : 'rgb(235,235,235)';
    const [k, st, u] = D.act.series[current];
    $('note').textContent = `Colour: layer ${k} ${st === 'h' ? 'hidden state' : 'cell state'} unit ${u}` +
      ' (red positive, blue negative, after reading each character)' +
      (SPAN < N ? `; activations kept for the first ${SPAN.toLocaleString()} characters (grey beyond)` : '');
  }
  legend();
  document.querySelectorAll('#ranked tbody tr').forEach(tr =>
    tr.classList.toggle('sel', mode === 'neuron' && Number(tr.dataset.series) === current));
}
['mode', 'layer', 'state'].forEach(id => $(id).addEventListener('change', paint));
$('unit').addEventListener('input', () => { $('mode').value = 'neuron'; paint(); });

// ---- ranked units
(() => { const tb = document.querySelector('#ranked tbody');
  D.ranked.forEach((r, i) => { const tr = document.createElement('tr');
    tr.dataset.series = seriesIndex[[r.layer, r.state, r.unit].join('/')];
    tr.innerHTML = `<td>${i + 1}</td><td>${r.layer}</td><td>${r.state}</td><td>${r.unit}</td>` +
      `<td>${r.feature.replace(/_/g, ' ')}</td><td>${r.r.toFixed(3)}</td>`;
    tr.addEventListener('click', () => { $('layer').value = String(r.layer); $('state').value = r.state;
      $('unit').value = r.unit; $('mode').value = 'neuron'; paint(); });
    tb.appendChild(tr); });
  if (!D.ranked.length) tb.innerHTML = '<tr><td colspan="6">no unit correlates with a feature here</td></tr>'; })();

// ---- tooltip
const tip = $('tip');
$('text').addEventListener('mouseover', e => {
  const s = e.target.closest('span.ch'); if (!s) return;
  const p = Number(s.dataset.p), tok = D.tokens[p];
  let h = `<div>position ${p}: <span class="sym">${esc(show(tok))}</span></div>`;
  if (D.surprisal[p] === null) h += '<div>not predicted (the first character, no context)</div>';
  else {
    const sp = D.surprisal[p];
    h += `<div>surprisal <b>${sp.toFixed(3)}</b> bits (p = ${Math.pow(2, -sp).toFixed(4)})</div>`;
    h += '<table class="top5">' + D.top_ids[p].map((id, j) => {
      const pr = D.top_p[p][j], hit = id === D.ids[p];
      return `<tr class="top${hit ? ' hit' : ''}"><td class="sym">${esc(show(D.vocab[id]))}</td>` +
        `<td><span class="pbar" style="width:${Math.round(80 * pr)}px"></span></td><td>${pr.toFixed(4)}</td></tr>`;
    }).join('') + '</table>';
  }
  if ($('mode').value === 'neuron' && current !== null && p < SPAN)
    h += `<div>activation ${(actValue(current, p) * D.act.scales[current]).toFixed(3)}</div>`;
  tip.innerHTML = h; tip.style.display = 'block';
  const r = s.getBoundingClientRect();
  tip.style.left = Math.min(window.innerWidth - 220, r.left) + 'px';
  tip.style.top = (r.bottom + 6 + 160 > window.innerHeight ? r.top - tip.offsetHeight - 6 : r.bottom + 6) + 'px';
});
$('text').addEventListener('mouseleave', () => { tip.style.display = 'none'; });

// ---- small SVG charts
const NS = 'http://www.w3.org/2000/svg';
function el(tag, attrs, parent) { const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]); if (parent) parent.appendChild(e); return e; }
function chart(parent, {w, h, x0, x1, y0, y1, title, xlabel, ylabel}) {
  const svg = el('svg', {width: w, height: h, viewBox: `0 0 ${w} ${h}`}, parent);
  const m = {l: 46, r: 10, t: 20, b: 34}, pw = w - m.l - m.r, ph = h - m.t - m.b;
  const X = v => m.l + (x1 > x0 ? (v - x0) / (x1 - x0) : 0.5) * pw;
  const Y = v => m.t + ph - (y1 > y0 ? (v - y0) / (y1 - y0) : 0.5) * ph;
  el('rect', {x: m.l, y: m.t, width: pw, height: ph, fill: 'none', stroke: '#bbb'}, svg);
  for (let i = 0; i <= 4; i++) {
    const xv = x0 + (x1 - x0) * i / 4, yv = y0 + (y1 - y0) * i / 4;
    el('text', {x: X(xv), y: m.t + ph + 13, 'text-anchor': 'middle'}, svg).textContent = +xv.toPrecision(3);
    el('text', {x: m.l - 4, y: Y(yv) + 4, 'text-anchor': 'end'}, svg).textContent = +yv.toPrecision(3);
  }
  el('text', {x: m.l + pw / 2, y: 14, 'text-anchor': 'middle', 'font-weight': 'bold'}, svg).textContent = title;
  el('text', {x: m.l + pw / 2, y: h - 4, 'text-anchor': 'middle'}, svg).textContent = xlabel;
  el('text', {x: 10, y: m.t + ph / 2, transform: `rotate(-90 10 ${m.t + ph / 2})`, 'text-anchor': 'middle'},
     svg).textContent = ylabel;
  return {svg, X, Y};
}
const GCOL = {i: '#d62728', f: '#1f77b4', o: '#2ca02c', r: '#9467bd', z: '#ff7f0e'};
const GNAME = {i: 'input', f: 'forget', o: 'output', r: 'reset', z: 'update'};
if (!D.gates.length) $('gates').textContent = `no gates: a ${D.config.cell} cell has none`;
D.gates.forEach(g => {
  const c = chart($('gates'), {w: 300, h: 300, x0: 0, x1: 1, y0: 0, y1: 1, title: `layer ${g.layer}`,
    xlabel: 'fraction left-saturated (< 0.1)', ylabel: 'fraction right-saturated (> 0.9)'});
  el('line', {x1: c.X(0), y1: c.Y(1), x2: c.X(1), y2: c.Y(0), stroke: '#ddd'}, c.svg);
  g.names.forEach((n, gi) => { g.low[gi].forEach((lo, u) => {
    el('circle', {cx: c.X(lo), cy: c.Y(g.high[gi][u]), r: 2.6, fill: GCOL[n], 'fill-opacity': 0.6}, c.svg); });
    el('rect', {x: 56 + 62 * gi, y: 24, width: 8, height: 8, fill: GCOL[n]}, c.svg);
    el('text', {x: 67 + 62 * gi, y: 32}, c.svg).textContent = GNAME[n]; });
});
(() => { const cv = D.curves, all = cv.train.concat(cv.val);
  if (!all.length) { $('curves').textContent = 'no metrics.jsonl in the run directory'; return; }
  const xs = all.map(p => p[0]), ys = all.map(p => p[1]);
  const c = chart($('curves'), {w: 640, h: 300, x0: Math.min(...xs), x1: Math.max(...xs), y0: Math.min(...ys),
    y1: Math.max(...ys), title: 'bits per character', xlabel: 'step', ylabel: 'bpc'});
  [[cv.train, '#1f77b4', 'train'], [cv.val, '#d62728', 'validation']].forEach(([pts, col, name], i) => {
    if (!pts.length) return;
    el('polyline', {points: pts.map(p => `${c.X(p[0])},${c.Y(p[1])}`).join(' '), fill: 'none', stroke: col,
      'stroke-width': 1.5}, c.svg);
    if (pts.length < 50) pts.forEach(p => el('circle', {cx: c.X(p[0]), cy: c.Y(p[1]), r: 2.5, fill: col}, c.svg));
    el('rect', {x: 520, y: 28 + 16 * i, width: 10, height: 3, fill: col}, c.svg);
    el('text', {x: 535, y: 33 + 16 * i}, c.svg).textContent = name; });
})();
$('summary').textContent = D.summary_text || '(no summary)';
paint();
"""
