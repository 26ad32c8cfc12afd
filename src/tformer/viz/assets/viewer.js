// tformer attention viewer: plain DOM, SVG and canvas; no libraries, no network.
// Text from the data (tokens, titles) only ever reaches the page through textContent, never as HTML.
(() => {
"use strict";

const DATA = JSON.parse(document.getElementById("tformer-data").textContent);
const ROW = 22; // px, the --row height of one token in the CSS
const MEAN = -1; // the "mean of heads" choice in the head selector

// viridis, 9 stops, interpolated linearly
const STOPS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
  [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];

function color(v) {
  const x = Math.min(1, Math.max(0, v)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x));
  const f = x - i;
  return STOPS[i].map((c, k) => Math.round(c + f * (STOPS[i + 1][k] - c)));
}

// weights arrive as little-endian uint16 (value / 65535), base64 encoded: (L, h, T, S) row-major
function decodeWeights(set) {
  const bytes = Uint8Array.from(atob(set.weights), (c) => c.charCodeAt(0));
  const view = new DataView(bytes.buffer);
  const out = new Float32Array(bytes.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = view.getUint16(2 * i, true) / 65535;
  return out;
}

const SETS = DATA.sets.map((s) => Object.assign({}, s, { values: decodeWeights(s) }));
const state = { set: 0, layer: 0, head: 0, pinned: null, hover: null };

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function current() { return SETS[state.set]; }

// the (T, S) map of layer slot li and head slot hi (or the mean over heads); the last one is kept
let lastMatrix = { key: null, value: null };
function matrix(set, li, hi) {
  const key = `${set.name}/${li}/${hi}`;
  if (lastMatrix.key === key) return lastMatrix.value;
  lastMatrix = { key, value: computeMatrix(set, li, hi) };
  return lastMatrix.value;
}

function computeMatrix(set, li, hi) {
  const [, h, T, S] = set.shape;
  const m = new Float32Array(T * S);
  const heads = hi === MEAN ? [...Array(h).keys()] : [hi];
  for (const j of heads) {
    const base = (li * h + j) * T * S;
    for (let i = 0; i < T * S; i++) m[i] += set.values[base + i] / heads.length;
  }
  return m;
}

function shown(token) {
  const s = token.replace(/\n/g, "\\n").replace(/\t/g, "\\t");
  return s.trim() === "" ? JSON.stringify(token) : s;
}

function headName(hi) { return hi === MEAN ? "mean of heads" : "head " + current().heads[hi]; }

// ---- tabs and selectors ----------------------------------------------------------------------------
function buildTabs() {
  const tabs = document.getElementById("set-tabs");
  tabs.replaceChildren();
  SETS.forEach((s, i) => {
    const b = el("button", { class: "set-tab" + (i === state.set ? " active" : ""), "data-set": String(i) }, s.title);
    b.addEventListener("click", () => { state.set = i; state.layer = 0; state.head = 0; state.pinned = null; render(true); });
    tabs.appendChild(b);
  });
}

function buildSelectors() {
  const set = current();
  const layer = document.getElementById("layer");
  layer.replaceChildren(...set.layers.map((l, i) => el("option", { value: String(i) }, "layer " + l)));
  layer.value = String(state.layer);
  const head = document.getElementById("head");
  head.replaceChildren(...set.heads.map((h, i) => el("option", { value: String(i) }, "head " + h)),
    el("option", { value: String(MEAN) }, "mean of heads"));
  head.value = String(state.head);
}

document.getElementById("layer").addEventListener("change", (e) => { state.layer = Number(e.target.value); render(false); });
document.getElementById("head").addEventListener("change", (e) => { state.head = Number(e.target.value); render(false); });

// ---- tokens, lines and the detail line -------------------------------------------------------------
function buildTokens() {
  const set = current();
  document.getElementById("query-title").textContent = set.name === "cross" ? "target (attending)" : "attending";
  document.getElementById("key-title").textContent = set.name === "cross" ? "source (attended to)" : "attended to";
  for (const [side, tokens] of [["query", set.queries], ["key", set.keys]]) {
    const column = document.getElementById(side === "query" ? "queries" : "keys");
    column.replaceChildren(...tokens.map((t, i) => {
      const node = el("div", { class: "token " + side, "data-index": String(i), title: t }, shown(t));
      node.addEventListener("mouseenter", () => { state.hover = { side, index: i }; paint(); });
      node.addEventListener("mouseleave", () => { state.hover = null; paint(); });
      node.addEventListener("click", () => {
        const same = state.pinned && state.pinned.side === side && state.pinned.index === i;
        state.pinned = same ? null : { side, index: i };
        paint();
      });
      return node;
    }));
  }
}

function focus() { return state.pinned || state.hover; }

function paint() {
  const set = current();
  const [, , T, S] = set.shape;
  const m = matrix(set, state.layer, state.head);
  const f = focus();
  const queries = document.querySelectorAll("#queries .token");
  const keys = document.querySelectorAll("#keys .token");
  queries.forEach((n, i) => {
    const w = f && f.side === "key" ? m[i * S + f.index] : 0;
    n.style.background = w ? `rgba(var(--query), ${w.toFixed(3)})` : "";
    n.classList.toggle("pinned", !!state.pinned && state.pinned.side === "query" && state.pinned.index === i);
  });
  keys.forEach((n, j) => {
    const w = f && f.side === "query" ? m[f.index * S + j] : 0;
    n.style.background = w ? `rgba(var(--key), ${w.toFixed(3)})` : "";
    n.classList.toggle("pinned", !!state.pinned && state.pinned.side === "key" && state.pinned.index === j);
  });
  drawLines(m, T, S, f);
  describe(m, T, S, f);
  drawHeatmap(m, T, S, f);
}

function drawLines(m, T, S, f) {
  const svg = document.getElementById("lines");
  const height = Math.max(T, S) * ROW;
  svg.setAttribute("height", String(height));
  svg.setAttribute("viewBox", `0 0 160 ${height}`);
  const ns = "http://www.w3.org/2000/svg";
  const lines = [];
  for (let i = 0; i < T; i++) {
    if (f && f.side === "query" && f.index !== i) continue;
    for (let j = 0; j < S; j++) {
      if (f && f.side === "key" && f.index !== j) continue;
      const w = m[i * S + j];
      if (w < 0.01) continue;
      const line = document.createElementNS(ns, "line");
      line.setAttribute("x1", "0"); line.setAttribute("y1", String((i + 0.5) * ROW));
      line.setAttribute("x2", "160"); line.setAttribute("y2", String((j + 0.5) * ROW));
      line.setAttribute("stroke", f && f.side === "key" ? "rgb(30,120,220)" : "rgb(235,120,20)");
      line.setAttribute("stroke-opacity", (f ? w : w * 0.6).toFixed(3));
      line.setAttribute("stroke-width", f ? "2.5" : "1.5");
      lines.push(line);
    }
  }
  svg.replaceChildren(...lines);
}

function strongest(values, labels, n) {
  return values.map((w, k) => [w, k]).sort((a, b) => b[0] - a[0]).slice(0, n)
    .map(([w, k]) => `${JSON.stringify(labels[k])} ${w.toFixed(2)}`).join(", ");
}

function describe(m, T, S, f) {
  const set = current();
  const where = `Layer ${set.layers[state.layer]}, ${headName(state.head)}. `;
  const detail = document.getElementById("detail");
  if (!f) { detail.textContent = where + "Hover or click a token."; return; }
  if (f.side === "query") {
    const row = Array.from(m.subarray(f.index * S, f.index * S + S));
    detail.textContent = where + `${JSON.stringify(set.queries[f.index])} (position ${f.index}) attends to: ` + strongest(row, set.keys, 4);
  } else {
    const column = [...Array(T).keys()].map((i) => m[i * S + f.index]);
    detail.textContent = where + `${JSON.stringify(set.keys[f.index])} (position ${f.index}) is attended by: ` + strongest(column, set.queries, 4);
  }
}

// ---- heatmap of the selected head ------------------------------------------------------------------
function drawHeatmap(m, T, S, f) {
  const canvas = document.getElementById("heatmap");
  const cell = Math.max(2, Math.min(18, Math.floor(460 / Math.max(T, S))));
  canvas.width = S * cell; canvas.height = T * cell;
  const ctx = canvas.getContext("2d");
  for (let i = 0; i < T; i++) {
    for (let j = 0; j < S; j++) {
      const [r, g, b] = color(m[i * S + j]);
      ctx.fillStyle = `rgb(${r},${g},${b})`;
      ctx.fillRect(j * cell, i * cell, cell, cell);
    }
  }
  if (f) {
    ctx.strokeStyle = "#e22"; ctx.lineWidth = 2;
    if (f.side === "query") ctx.strokeRect(1, f.index * cell + 1, S * cell - 2, cell - 2);
    else ctx.strokeRect(f.index * cell + 1, 1, cell - 2, T * cell - 2);
  }
  canvas.dataset.cell = String(cell);
}

document.getElementById("heatmap").addEventListener("mousemove", (e) => {
  const set = current();
  const [, , T, S] = set.shape;
  const cell = Number(e.target.dataset.cell);
  const i = Math.floor(e.offsetY / cell), j = Math.floor(e.offsetX / cell);
  if (i < 0 || j < 0 || i >= T || j >= S) return;
  const w = matrix(set, state.layer, state.head)[i * S + j];
  document.getElementById("heat-readout").textContent =
    `${JSON.stringify(set.queries[i])} -> ${JSON.stringify(set.keys[j])}: ${w.toFixed(4)}`;
});

// ---- overview: every layer x head as a thumbnail ---------------------------------------------------
function buildOverview() {
  const set = current();
  const [L, h, T, S] = set.shape;
  const grid = document.getElementById("overview");
  grid.style.gridTemplateColumns = `4.5rem repeat(${h}, 68px)`;
  const cells = [el("div", { class: "ov-label" }, "")];
  set.heads.forEach((head) => cells.push(el("div", { class: "ov-label" }, "head " + head)));
  for (let li = 0; li < L; li++) {
    cells.push(el("div", { class: "ov-label" }, "layer " + set.layers[li]));
    for (let hi = 0; hi < h; hi++) {
      const canvas = el("canvas", { class: "thumb", width: String(S), height: String(T),
        "data-layer": String(set.layers[li]), "data-head": String(set.heads[hi]),
        title: `layer ${set.layers[li]}, head ${set.heads[hi]}` });
      // keep the map's aspect ratio inside a 64 px box
      canvas.style.width = `${Math.round(64 * Math.min(1, S / T))}px`;
      canvas.style.height = `${Math.round(64 * Math.min(1, T / S))}px`;
      const ctx = canvas.getContext("2d");
      const image = ctx.createImageData(S, T);
      const m = matrix(set, li, hi);
      for (let k = 0; k < T * S; k++) {
        const [r, g, b] = color(m[k]);
        image.data.set([r, g, b, 255], 4 * k);
      }
      ctx.putImageData(image, 0, 0);
      canvas.addEventListener("click", () => { state.layer = li; state.head = hi; render(false); });
      cells.push(canvas);
    }
  }
  grid.replaceChildren(...cells);
}

function markSelected() {
  const set = current();
  document.querySelectorAll("#overview .thumb").forEach((t) => {
    const picked = state.head !== MEAN && Number(t.dataset.layer) === set.layers[state.layer]
      && Number(t.dataset.head) === set.heads[state.head];
    t.classList.toggle("selected", picked);
  });
}

function render(newSet) {
  if (newSet) { buildTabs(); buildTokens(); buildOverview(); }
  buildSelectors();
  markSelected();
  paint();
  document.body.dataset.ready = "1";
}

document.getElementById("source-text").textContent = DATA.source;
if (DATA.target !== null) {
  document.getElementById("target-line").hidden = false;
  document.getElementById("target-text").textContent = DATA.target;
}
render(true);
})();
