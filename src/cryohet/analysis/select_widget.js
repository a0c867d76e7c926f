// The "Select particles" section of cryohet's report (see cryohet/analysis/report_select.py).
// Self-contained: reads the JSON in #sel-data, draws on two canvases, writes downloads as Blobs.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const D = JSON.parse($("sel-data").textContent);

  function bytes(b64) {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  const P = D.n_points;
  const rows = D.rows ? new Int32Array(bytes(D.rows).buffer) : null; // run row of point p (null: p itself)
  const orig = D.orig ? new Int32Array(bytes(D.orig).buffer) : null; // original index (null: the run row)
  const labels = D.label_bytes === 2 ? new Uint16Array(bytes(D.labels).buffer) : bytes(D.labels);
  const views = { pca: { xy: new Float32Array(bytes(D.pca).buffer), pos: null, axes: D.pca_axes, name: "PC1 / PC2" } };
  if (D.umap) {
    views.umap = { xy: new Float32Array(bytes(D.umap).buffer), pos: new Int32Array(bytes(D.umap_pos).buffer),
      axes: ["UMAP1", "UMAP2"], name: "UMAP" };
  }
  let view = D.umap ? "umap" : "pca";
  const sel = new Uint8Array(P);

  const W = 640, H = 540, M = { l: 56, r: 14, t: 14, b: 44 };
  const canvas = $("sel-canvas"), overlay = $("sel-overlay");
  const dpr = window.devicePixelRatio || 1;
  for (const c of [canvas, overlay]) { c.width = W * dpr; c.height = H * dpr; c.getContext("2d").scale(dpr, dpr); }

  for (const v of Object.values(views)) { // axis ranges with 4 % padding
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let j = 0; j < v.xy.length; j += 2) {
      const x = v.xy[j], y = v.xy[j + 1];
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
    const px = (x1 - x0) * 0.04 || 1, py = (y1 - y0) * 0.04 || 1;
    Object.assign(v, { x0: x0 - px, x1: x1 + px, y0: y0 - py, y1: y1 + py, n: v.xy.length / 2 });
  }
  const sx = (v, x) => M.l + ((x - v.x0) / (v.x1 - v.x0)) * (W - M.l - M.r);
  const sy = (v, y) => H - M.b - ((y - v.y0) / (v.y1 - v.y0)) * (H - M.t - M.b);
  const dx = (v, px) => v.x0 + ((px - M.l) / (W - M.l - M.r)) * (v.x1 - v.x0);
  const dy = (v, py) => v.y0 + ((H - M.b - py) / (H - M.t - M.b)) * (v.y1 - v.y0);

  function ticks(a, b) {
    const step0 = (b - a) / 5, mag = Math.pow(10, Math.floor(Math.log10(step0)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0);
    const out = [];
    for (let t = Math.ceil(a / step) * step; t <= b; t += step) out.push(+t.toPrecision(6));
    return out;
  }

  function draw() {
    const v = views[view], ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, W, H);
    ctx.strokeStyle = "#8895a3"; ctx.fillStyle = "#5b6776"; ctx.font = "11px sans-serif";
    ctx.strokeRect(M.l, M.t, W - M.l - M.r, H - M.t - M.b);
    ctx.textAlign = "center";
    for (const t of ticks(v.x0, v.x1)) ctx.fillText(String(t), sx(v, t), H - M.b + 14);
    ctx.fillText(v.axes[0], (M.l + W - M.r) / 2, H - 8);
    ctx.textAlign = "right";
    for (const t of ticks(v.y0, v.y1)) ctx.fillText(String(t), M.l - 4, sy(v, t) + 4);
    ctx.save(); ctx.translate(14, (M.t + H - M.b) / 2); ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center"; ctx.fillText(v.axes[1], 0, 0); ctx.restore();
    const any = count() > 0, r = v.n > 50000 ? 1.5 : v.n > 5000 ? 2.5 : 4;
    for (const pass of [0, 1]) { // unselected (faded while something is selected), then selected
      ctx.globalAlpha = pass === 0 && any ? 0.15 : 0.85;
      D.colours.forEach((colour, c) => {
        ctx.fillStyle = colour;
        for (let j = 0; j < v.n; j++) {
          const p = v.pos ? v.pos[j] : j;
          if (labels[p] !== c || (sel[p] === 1) !== (pass === 1)) continue;
          ctx.fillRect(sx(v, v.xy[2 * j]) - r / 2, sy(v, v.xy[2 * j + 1]) - r / 2, r, r);
        }
      });
    }
    ctx.globalAlpha = 1;
  }

  function count() { let s = 0; for (let p = 0; p < P; p++) s += sel[p]; return s; }

  function update() {
    const s = count();
    $("sel-count").textContent = s.toLocaleString("en-US") + " of " + D.n_run.toLocaleString("en-US") +
      " particles selected";
    const v = views[view];
    $("sel-shown").textContent = v.n < D.n_run ? "(the lasso selects among the " + v.n.toLocaleString("en-US") +
      " points shown in this view" + (v.n < P ? "; the PC1 / PC2 view shows " + P.toLocaleString("en-US") : "") +
      ")" : "";
    $("sel-pkl").disabled = s === 0 || !D.has_orig;
    $("sel-txt").disabled = s === 0;
    $("sel-star").disabled = s === 0 || !D.star || typeof DecompressionStream === "undefined";
    draw();
  }

  function inside(poly, x, y) { // even-odd rule
    let c = false;
    for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
      const [xi, yi] = poly[i], [xj, yj] = poly[j];
      if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) c = !c;
    }
    return c;
  }

  function apply(mode, poly) { // poly in data coordinates of the current view
    const v = views[view];
    if (mode === "replace") sel.fill(0);
    let bx0 = Infinity, bx1 = -Infinity, by0 = Infinity, by1 = -Infinity;
    for (const [x, y] of poly) { bx0 = Math.min(bx0, x); bx1 = Math.max(bx1, x); by0 = Math.min(by0, y); by1 = Math.max(by1, y); }
    for (let j = 0; j < v.n; j++) {
      const x = v.xy[2 * j], y = v.xy[2 * j + 1];
      if (x < bx0 || x > bx1 || y < by0 || y > by1 || !inside(poly, x, y)) continue;
      sel[v.pos ? v.pos[j] : j] = mode === "remove" ? 0 : 1;
    }
    update();
  }

  const modeOf = (ev) => (ev.shiftKey ? "add" : ev.altKey || ev.ctrlKey || ev.metaKey ? "remove" : "replace");
  let lasso = null;
  function xyOf(ev) { const b = overlay.getBoundingClientRect(); return [ev.clientX - b.left, ev.clientY - b.top]; }
  function drawLasso() {
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, W, H);
    if (!lasso || lasso.pts.length < 2) return;
    ctx.beginPath(); ctx.moveTo(...lasso.pts[0]);
    for (const q of lasso.pts) ctx.lineTo(...q);
    ctx.closePath(); ctx.fillStyle = "rgba(31,111,178,0.08)"; ctx.fill();
    ctx.strokeStyle = "#12324f"; ctx.setLineDash([4, 3]); ctx.lineWidth = 1.2; ctx.stroke();
  }
  const applied = []; // polygons (data coordinates) the mouse drew, for the test hook
  overlay.addEventListener("pointerdown", (ev) => {
    ev.preventDefault();
    try { overlay.setPointerCapture(ev.pointerId); } catch (err) { /* a synthetic event's pointer */ }
    lasso = { mode: modeOf(ev), pts: [xyOf(ev)] };
  });
  overlay.addEventListener("pointermove", (ev) => {
    if (!lasso) return;
    const q = xyOf(ev), last = lasso.pts[lasso.pts.length - 1];
    if (Math.hypot(q[0] - last[0], q[1] - last[1]) >= 2) { lasso.pts.push(q); drawLasso(); }
  });
  overlay.addEventListener("pointerup", () => {
    if (!lasso) return;
    const { mode, pts } = lasso, v = views[view];
    lasso = null; drawLasso();
    if (pts.length >= 3) {
      const poly = pts.map(([px, py]) => [dx(v, px), dy(v, py)]);
      applied.push(poly); apply(mode, poly);
    }
    else if (mode === "replace") { sel.fill(0); update(); }
  });

  const vbox = $("sel-views");
  for (const key of Object.keys(views).length > 1 ? ["umap", "pca"] : []) {
    const b = document.createElement("button");
    b.textContent = views[key].name; b.dataset.view = key;
    b.onclick = () => { view = key; for (const o of vbox.children) o.style.fontWeight = o === b ? "700" : "400"; update(); };
    b.style.fontWeight = key === view ? "700" : "400";
    vbox.appendChild(b);
  }
  $("sel-clear").onclick = () => { sel.fill(0); update(); };
  $("sel-invert").onclick = () => { for (let p = 0; p < P; p++) sel[p] ^= 1; update(); };
  D.colours.forEach((colour, c) => {
    const s = document.createElement("span");
    s.innerHTML = "<i></i>cluster " + c + " (" + D.counts[c].toLocaleString("en-US") + ")";
    s.firstChild.style.background = colour;
    s.onclick = (ev) => {
      const mode = modeOf(ev);
      if (mode === "replace") sel.fill(0);
      for (let p = 0; p < P; p++) if (labels[p] === c) sel[p] = mode === "remove" ? 0 : 1;
      update();
    };
    $("sel-legend").appendChild(s);
  });

  function selected() { // run rows (ascending) and original indices of the selection
    const r = [], o = [];
    for (let p = 0; p < P; p++) {
      if (!sel[p]) continue;
      const row = rows ? rows[p] : p;
      r.push(row); o.push(orig ? orig[p] : row);
    }
    return { rows: r, orig: o };
  }

  // cryoDRGN ind.pkl: what pickle.dumps(np.array(ind, np.int64), protocol=2) writes under numpy 1.x.
  function indPickle(ind) {
    const out = [];
    const op = (...b) => { for (const x of b) out.push(x); };
    const ascii = (s) => { for (let i = 0; i < s.length; i++) out.push(s.charCodeAt(i)); };
    const u32 = (n) => op(n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255);
    const global = (mod, name) => { op(0x63); ascii(mod + "\n" + name + "\n"); };
    const unicode = (utf8) => { op(0x58); u32(utf8.length); for (const x of utf8) out.push(x); };
    const put = (i) => op(0x71, i), get = (i) => op(0x68, i);
    const int = (n) => (n < 256 ? op(0x4b, n) : n < 65536 ? op(0x4d, n & 255, n >> 8) : (op(0x4a), u32(n)));
    const text = (s) => { const u = []; for (let i = 0; i < s.length; i++) u.push(s.charCodeAt(i)); return u; };
    // the data: int64 little-endian, as a latin-1 str whose UTF-8 bytes the pickle holds
    const raw = new Uint8Array(ind.length * 8), dv = new DataView(raw.buffer);
    ind.forEach((v, i) => dv.setBigInt64(8 * i, BigInt(v), true));
    const utf8 = [];
    for (const b of raw) { if (b < 0x80) utf8.push(b); else utf8.push(0xc0 | (b >> 6), 0x80 | (b & 0x3f)); }
    op(0x80, 2);
    global("numpy.core.multiarray", "_reconstruct"); put(0);
    global("numpy", "ndarray"); put(1);
    int(0); op(0x85); put(2);
    global("_codecs", "encode"); put(3);
    unicode(text("b")); put(4); unicode(text("latin1")); put(5);
    op(0x86); put(6); op(0x52); put(7); op(0x87); put(8); op(0x52); put(9);
    op(0x28); int(1); int(ind.length); op(0x85); put(10);
    global("numpy", "dtype"); put(11);
    unicode(text("i8")); put(12); op(0x89, 0x88, 0x87); put(13); op(0x52); put(14);
    op(0x28); int(3); unicode(text("<")); put(15);
    op(0x4e, 0x4e, 0x4e, 0x4a, 255, 255, 255, 255, 0x4a, 255, 255, 255, 255); int(0); op(0x74); put(16);
    op(0x62, 0x89); get(3); unicode(utf8); put(17); get(5); op(0x86); put(18); op(0x52); put(19);
    op(0x74); put(20); op(0x62, 0x2e);
    return new Uint8Array(out);
  }

  let starLines = null;
  async function starText(r) {
    if (!starLines) {
      const stream = new Blob([bytes(D.star.rows)]).stream().pipeThrough(new DecompressionStream("gzip"));
      starLines = (await new Response(stream).text()).split("\n");
    }
    const groups = new Int32Array(bytes(D.star.groups).buffer), used = new Set(r.map((i) => groups[i]));
    const parts = [D.star.head];
    for (const [g, line] of D.star.optics) if (used.has(g)) parts.push(line + "\n");
    parts.push(D.star.mid);
    for (const i of r) parts.push(starLines[i] + "\n");
    parts.push(D.star.tail);
    return parts.join("");
  }

  function download(name, data, type) {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([data], { type: type }));
    a.download = name;
    document.body.appendChild(a); a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 2000);
  }
  const rowsText = (r) => "# " + r.length + " rows (0-based) of the run " + D.run + ", selected in its report\n" +
    "# cryohet select RUN --indices selection.txt --out subset.star\n" + r.join("\n") + "\n";
  $("sel-pkl").onclick = () => download("ind.pkl", indPickle(selected().orig), "application/octet-stream");
  $("sel-txt").onclick = () => download("selection.txt", rowsText(selected().rows), "text/plain");
  $("sel-star").onclick = async () => {
    $("sel-status").textContent = "writing subset.star ...";
    try { download("subset.star", await starText(selected().rows), "text/plain"); $("sel-status").textContent = ""; }
    catch (err) { $("sel-status").textContent = "subset.star failed: " + err; }
  };
  if (D.star && typeof DecompressionStream === "undefined") {
    $("sel-status").textContent = "This browser cannot unpack subset.star (no DecompressionStream); " +
      "use selection.txt with cryohet select.";
  }

  update();
  $("select").dataset.ready = "1";

  function drag(mode, poly) { // pointer events along poly (data coordinates), with the mode's modifier key
    const v = views[view], b = overlay.getBoundingClientRect();
    const keys = { shiftKey: mode === "add", altKey: mode === "remove", pointerId: 1, bubbles: true };
    const at = ([x, y]) => ({ clientX: b.left + sx(v, x), clientY: b.top + sy(v, y), ...keys });
    overlay.dispatchEvent(new PointerEvent("pointerdown", at(poly[0])));
    for (const q of poly.slice(1)) overlay.dispatchEvent(new PointerEvent("pointermove", at(q)));
    overlay.dispatchEvent(new PointerEvent("pointerup", at(poly[poly.length - 1])));
  }

  // Test hook / reproducible selections: #view=pca&lasso=x0,y0,x1,y1,...[&lasso=add:...|remove:...];
  // drag=... the same through mouse (pointer) events on the canvas.
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.has("lasso") || hash.has("drag")) {
    (async () => {
      const out = $("sel-result");
      try {
        if (hash.get("view") && views[hash.get("view")]) view = hash.get("view");
        for (const [key, spec0] of hash.entries()) {
          if (key !== "lasso" && key !== "drag") continue;
          let mode = "replace", spec = spec0;
          const m = /^(add|remove):/.exec(spec);
          if (m) { mode = m[1]; spec = spec.slice(m[0].length); }
          const v = spec.split(",").map(Number), poly = [];
          for (let i = 0; i + 1 < v.length; i += 2) poly.push([v[i], v[i + 1]]);
          if (key === "drag") drag(mode, poly); else apply(mode, poly);
        }
        const s = selected(), pkl = indPickle(s.orig);
        let bin = "";
        for (let i = 0; i < pkl.length; i += 8192) bin += String.fromCharCode(...pkl.subarray(i, i + 8192));
        const star = D.star && s.rows.length ? await starText(s.rows) : null;
        out.textContent = JSON.stringify({ view: view, count: count(), text: $("sel-count").textContent,
          rows: s.rows, orig: s.orig, pkl: btoa(bin), txt: rowsText(s.rows), star: star, dragged: applied });
      } catch (err) {
        out.textContent = JSON.stringify({ error: String(err) });
      }
    })();
  }
})();
