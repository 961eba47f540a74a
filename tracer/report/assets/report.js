"use strict";
// pathtrace report: the many-connection view, drawn from the embedded data (pathtrace-html/v1).
// Everything about the traced request, and the listing's summary, is already plain HTML; this
// only adds the scatter, the counts of what the filter shows, the sortable/filterable table and
// the click-through.
(function () {
  addEventListener("beforeprint", function () {
    document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  });
  var el = document.getElementById("pathtrace-data");
  if (!el) return;
  var data = JSON.parse(el.textContent);
  var L = data.list;
  if (!L || !document.getElementById("connections")) return;

  var COLORS = {ok: "#2e7d32", reset: "#d35400", rejected: "#c0392b", unanswered: "#8e1b5c",
    incomplete: "#7f8c8d", "": "#1f5fa8"};
  var FAILED = {reset: 1, rejected: 1, unanswered: 1, incomplete: 1};
  var S = L.strings, N = L.count, C = {};
  // Columns come packed (see list_data): a constant (with exceptions), an arithmetic sequence,
  // differences, or plain.
  Object.keys(L.columns).forEach(function (k) {
    var c = L.columns[k], out;
    if (Array.isArray(c)) out = c;
    else if ("c" in c) { out = new Array(N).fill(c.c); (c.x || []).forEach(function (e) { out[e[0]] = e[1]; }); }
    else if (c.seq) { out = []; for (var i = 0; i < N; i++) out.push(c.seq[0] + i * c.seq[1]); }
    else { var last = 0; out = c.d.map(function (d) { if (d == null) return null; last += d; return last; }); }
    C[k] = out;
  });
  function str(col, i) { var c = C[col]; if (!c) return ""; var v = c[i]; return v == null ? "" : S[v]; }
  function num(col, i) { var c = C[col]; return c ? c[i] : null; }
  function ep(col, i) { var h = str(col, i), p = num(col + "_port", i); return h ? (p != null ? h + ":" + p : h) : ""; }
  function msText(us) { return us == null ? "—" : (us / 1000).toFixed(3); }
  function outcome(i) { return str("outcome", i); }

  // Columns of the table: [key, header, value(i), numeric?]
  var COLS = [
    ["index", "#", function (i) { return num("index", i); }, true],
    ["outcome", "outcome", outcome, false],
    ["start", "start (s)", function (i) { var s = num("start_us", i); return s == null ? null : s / 1e6; }, true],
    ["protocol", "proto", function (i) { return str("protocol", i); }, false],
    ["client", "client", function (i) { return ep("client", i); }, false],
    ["destination", "destination", function (i) { return ep("destination", i); }, false],
    ["service", "Service", function (i) { return str("service", i); }, false],
    ["backend", "backend", function (i) { return ep("backend", i); }, false],
    ["node", "node", function (i) { return str("node", i); }, false],
    ["total", "total (ms)", function (i) { return num("total_us", i); }, true],
    ["connect", "connect (ms)", function (i) { return num("connect_us", i); }, true],
    ["server", "server (ms)", function (i) { return num("server_us", i); }, true],
    ["retransmissions", "retr.", function (i) { return num("retransmissions", i); }, true],
    ["last_point", "last point", function (i) { return str("last_point", i); }, false],
    ["outcome_by", "answered by", function (i) { return str("outcome_by", i); }, false],
    ["summary", "summary", function (i) { return str("summary", i); }, false]
  ].filter(function (c) {
    var k = {start: "start_us", total: "total_us", connect: "connect_us", server: "server_us"}[c[0]] || c[0];
    return C[k] !== undefined;
  });
  var TIMECOL = {total: 1, connect: 1, server: 1};
  var byKey = {};
  COLS.forEach(function (c) { byKey[c[0]] = c; });

  // --- filter ---------------------------------------------------------------------------------
  var input = document.getElementById("filter"), failedOnly = document.getElementById("failed");
  var outcomeOnly = null, sortKey = "index", sortAsc = true, selected = null, view = [];
  function parse(text) {
    return text.trim().split(/\s+/).filter(Boolean).map(function (t) {
      var m = /^([a-z_]+)(>=|<=|=|>|<)(.+)$/.exec(t);
      if (m && byKey[m[1]]) return {key: m[1], op: m[2], value: m[3]};
      return {text: t.toLowerCase()};
    });
  }
  function rowText(i) { return COLS.map(function (c) { var v = c[2](i); return v == null ? "" : String(v); }).join(" ").toLowerCase(); }
  function test(term, i) {
    if (term.text !== undefined) return rowText(i).indexOf(term.text) >= 0;
    var c = byKey[term.key], v = c[2](i);
    if (c[3]) {
      if (v == null) return false;
      var x = parseFloat(term.value);
      if (TIMECOL[term.key]) { v = v / 1000; if (/s$/.test(term.value) && !/ms$/.test(term.value)) x *= 1000; }
      return term.op === "=" ? v === x : term.op === ">" ? v > x : term.op === "<" ? v < x : term.op === ">=" ? v >= x : v <= x;
    }
    v = String(v).toLowerCase();
    var want = term.value.toLowerCase();
    return term.op === "=" ? (term.key === "outcome" ? v === want : v.indexOf(want) >= 0) : false;
  }
  function filtered() {
    var terms = parse(input.value), out = [];
    for (var i = 0; i < N; i++) {
      var o = outcome(i);
      if (failedOnly.checked && !FAILED[o]) continue;
      if (outcomeOnly !== null && o !== outcomeOnly) continue;
      var ok = true;
      for (var k = 0; k < terms.length && ok; k++) ok = test(terms[k], i);
      if (ok) out.push(i);
    }
    return out;
  }

  // --- outcome counts -------------------------------------------------------------------------
  function drawCounts(rows) {
    var box = document.getElementById("outcomes"), counts = {}, order = [];
    rows.forEach(function (i) { var o = outcome(i); if (!(o in counts)) { counts[o] = 0; order.push(o); } counts[o]++; });
    var known = ["ok", "reset", "rejected", "unanswered", "incomplete"];
    order.sort(function (a, b) { return known.indexOf(a) - known.indexOf(b); });
    box.innerHTML = "";
    var all = document.createElement("button");
    all.textContent = rows.length + " shown"; all.className = outcomeOnly === null ? "on" : "";
    all.onclick = function () { outcomeOnly = null; update(); };
    box.appendChild(all);
    order.forEach(function (o) {
      var b = document.createElement("button");
      b.className = "outcome-count" + (outcomeOnly === o ? " on" : "");
      b.dataset.outcome = o;
      b.innerHTML = '<i style="background:' + (COLORS[o] || COLORS[""]) + '"></i>' + (o || "outcome not known") + ": <b>" + counts[o] + "</b>";
      b.onclick = function () { outcomeOnly = outcomeOnly === o ? null : o; update(); };
      box.appendChild(b);
    });
  }

  // --- scatter --------------------------------------------------------------------------------
  var canvas = document.getElementById("scatter"), pts = [];
  function drawScatter(rows) {
    var dpr = window.devicePixelRatio || 1, W = 960, H = 300;
    canvas.width = W * dpr; canvas.height = H * dpr; canvas.style.width = W + "px"; canvas.style.height = H + "px";
    var g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.fillStyle = "#fff"; g.fillRect(0, 0, W, H);
    var left = 70, right = W - 14, top = 44, bottom = H - 34;
    var xs = [], ys = [];
    rows.forEach(function (i) { var s = num("start_us", i), t = num("total_us", i); if (s != null) xs.push(s); if (t != null && t > 0) ys.push(t); });
    var x0 = Math.min.apply(null, xs.length ? xs : [0]), x1 = Math.max.apply(null, xs.length ? xs : [1]);
    if (x1 <= x0) x1 = x0 + 1;
    var lo = Math.log10(Math.max(1, Math.min.apply(null, ys.length ? ys : [100]))), hi = Math.log10(Math.max.apply(null, ys.length ? ys : [1000]));
    lo = Math.floor(lo); hi = Math.ceil(hi); if (hi <= lo) hi = lo + 1;
    function X(s) { return left + (s - x0) / (x1 - x0) * (right - left); }
    function Y(t) { return bottom - (Math.log10(Math.max(t, 1)) - lo) / (hi - lo) * (bottom - top); }
    g.strokeStyle = "#e3e7eb"; g.fillStyle = "#5f6b76"; g.font = "11px DejaVu Sans, sans-serif"; g.lineWidth = 1;
    for (var d = lo; d <= hi; d++) {
      var y = Y(Math.pow(10, d));
      g.beginPath(); g.moveTo(left, y); g.lineTo(right, y); g.stroke();
      g.textAlign = "right"; g.fillText(msText(Math.pow(10, d)).replace(/\.?0+$/, "") + " ms", left - 6, y + 4);
    }
    g.textAlign = "left"; g.fillText("total latency (log scale); squares on top: no total (no answer, or not complete)", 4, 14);
    g.textAlign = "right"; g.fillText("no total", left - 6, top - 18);
    g.textAlign = "center";
    for (var k = 0; k <= 5; k++) {
      var s = x0 + (x1 - x0) * k / 5;
      var span = x1 - x0;
      g.fillText(span < 2e6 ? (s / 1e3).toFixed(span < 2e4 ? 2 : 0) + " ms" : (s / 1e6).toFixed(span < 2e7 ? 2 : 0) + " s", X(s), H - 16);
    }
    g.fillText("start (since the first connection)", (left + right) / 2, H - 2);
    pts = [];
    // Failed last, so that they stay on top of a dense cloud of successes.
    var order = rows.slice().sort(function (a, b) { return (FAILED[outcome(a)] ? 1 : 0) - (FAILED[outcome(b)] ? 1 : 0); });
    order.forEach(function (i) {
      var s = num("start_us", i), t = num("total_us", i);
      if (s == null) return;
      var x = X(s), y = t == null ? top - 22 : Y(t), o = outcome(i);
      g.fillStyle = COLORS[o] || COLORS[""];
      var r = (rows.length < 200 ? 1.6 : 1) * (FAILED[o] ? 3.2 : 2.4);
      if (t == null) { g.fillRect(x - r, y - r, 2 * r, 2 * r); } else { g.beginPath(); g.arc(x, y, r, 0, 6.3); g.fill(); }
      pts.push([x, y, i]);
    });
    if (selected !== null) {
      var p = pts.filter(function (q) { return q[2] === selected; })[0];
      if (p) { g.strokeStyle = "#000"; g.lineWidth = 2; g.beginPath(); g.arc(p[0], p[1], 7, 0, 6.3); g.stroke(); }
    }
  }
  canvas.addEventListener("click", function (ev) {
    var r = canvas.getBoundingClientRect(), x = (ev.clientX - r.left) * (960 / r.width), y = (ev.clientY - r.top) * (300 / r.height);
    var best = null, bd = 100;
    pts.forEach(function (p) { var d = (p[0] - x) * (p[0] - x) + (p[1] - y) * (p[1] - y); if (d < bd) { bd = d; best = p[2]; } });
    if (best !== null) select(best);
  });

  // --- table ----------------------------------------------------------------------------------
  var MAX_ROWS = 300;
  function esc(s) { return String(s).replace(/[&<>"]/g, function (c) { return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]; }); }
  function cell(c, i) {
    var v = c[2](i);
    if (c[0] === "outcome") return '<td class="oc oc-' + esc(v) + '">' + esc(v || "—") + "</td>";
    if (TIMECOL[c[0]]) return "<td class=num>" + msText(v) + "</td>";
    if (c[0] === "start") return "<td class=num>" + (v == null ? "" : v.toFixed(3)) + "</td>";
    if (c[3]) return "<td class=num>" + (v == null ? "" : v) + "</td>";
    return "<td" + (c[0] === "summary" ? "" : " class=mono") + ">" + esc(v) + "</td>";
  }
  function drawTable(rows) {
    var table = document.getElementById("conns");
    table.tHead.innerHTML = "<tr>" + COLS.map(function (c) {
      var cls = (c[3] ? "num " : "") + (c[0] === sortKey ? "sorted" + (sortAsc ? " asc" : "") : "");
      return '<th data-key="' + c[0] + '" class="' + cls + '">' + esc(c[1]) + "</th>";
    }).join("") + "</tr>";
    var c = byKey[sortKey] || COLS[0], dir = sortAsc ? 1 : -1;
    rows = rows.slice().sort(function (a, b) {
      var x = c[2](a), y = c[2](b);
      if (x == null || x === "") return 1; if (y == null || y === "") return -1;
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
    view = rows;
    table.tBodies[0].innerHTML = rows.slice(0, MAX_ROWS).map(function (i) {
      return '<tr tabindex="0" data-i="' + i + '"' + (i === selected ? ' class="sel"' : "") + ">" + COLS.map(function (col) { return cell(col, i); }).join("") + "</tr>";
    }).join("");
    document.getElementById("shown").textContent = rows.length + " of " + N + " connections";
    document.getElementById("more").textContent = rows.length > MAX_ROWS ? "The table shows the first " + MAX_ROWS + " of " + rows.length + " rows in this order; sort or filter to see others." : "";
  }
  document.getElementById("conns").addEventListener("keydown", function (ev) {
    var tr = ev.target.closest("tr[data-i]");
    if (tr && ev.key === "Enter") select(+tr.dataset.i);
  });
  document.getElementById("conns").addEventListener("click", function (ev) {
    var th = ev.target.closest("th");
    if (th) { var k = th.dataset.key; if (k === sortKey) sortAsc = !sortAsc; else { sortKey = k; sortAsc = !byKey[k][3]; } update(); return; }
    var tr = ev.target.closest("tr[data-i]");
    if (tr) select(+tr.dataset.i);
  });

  // --- one connection -------------------------------------------------------------------------
  function hopRows(hops) {
    return hops.map(function (h, k) {
      return "<tr" + (h[4] && h[4] !== "proxy" ? ' class="rewrite"' : "") + "><td class=num>" + (k + 1) + "</td><td>" + esc(h[0]) + "</td><td>" + esc(h[1]) + "</td><td class=num>" + h[2].toFixed(3) + "</td><td class=mono>" + esc(h[3]) + "</td><td class=mono>" + esc(h[4] === "proxy" ? "L7 proxy hand-over" : h[4]) + "</td></tr>";
    }).join("");
  }
  function select(i) {
    selected = i;
    var box = document.getElementById("detail"), idx = num("index", i), o = outcome(i);
    var p = data.paths ? data.paths[String(idx)] : null;
    var html = "<h3>Connection #" + esc(idx) + ' <span class="oc oc-' + esc(o) + '">' + esc(o || "") + "</span></h3>";
    html += '<p class="mono">' + esc(str("protocol", i) + " " + ep("client", i) + " → " + ep("destination", i)) + (ep("backend", i) ? " (backend " + esc(ep("backend", i)) + ")" : "") + "</p>";
    var facts = [["summary", str("summary", i)], ["answered by", str("outcome_by", i)], ["last point", str("last_point", i)],
      ["connect", msText(num("connect_us", i)) + " ms"], ["server", msText(num("server_us", i)) + " ms"], ["total", msText(num("total_us", i)) + " ms"]];
    html += '<dl class="facts">' + facts.filter(function (f) { return f[1] && f[1] !== "— ms"; }).map(function (f) { return "<div><dt>" + f[0] + "</dt><dd>" + esc(f[1]) + "</dd></div>"; }).join("") + "</dl>";
    if (p) {
      var seen = [];
      p.forward.forEach(function (h) { if (seen.indexOf(h[0]) < 0) seen.push(h[0]); });
      html += '<div class="chain">' + seen.map(function (s) { return "<span>" + esc(s) + "</span>"; }).join("→") +
        (p.end === "reply" ? "" : '→<span class="x">✕ ' + (p.end === "icmp" ? "ICMP error back" : "no reply") + "</span>") + "</div>";
      var head = "<table class=hops><thead><tr><th>#</th><th>point</th><th>interface</th><th>time (ms)</th><th>tuple (where it changed)</th><th>rewrite</th></tr></thead><tbody>";
      html += "<h3>Forward</h3>" + head + hopRows(p.forward) + "</tbody></table>";
      html += "<h3>Return</h3>" + (p.reverse.length ? head + hopRows(p.reverse) + "</tbody></table>" : '<p class="empty">no reply was seen at any capture point</p>');
    } else {
      html += '<p class="hint">Its path is not in this file (' + esc(data.paths_note || "only some paths are precomputed") + "). Trace it with <code>pathtrace analyze " + esc(data.source) + " --request " + esc(idx) + "</code>.</p>";
    }
    box.innerHTML = html;
    box.className = "detail" + (FAILED[o] ? " bad" : "");
    box.hidden = false;
    box.dataset.connection = idx;
    drawScatter(currentRows);
    document.querySelectorAll("#conns tr.sel").forEach(function (r) { r.classList.remove("sel"); });
    var tr = document.querySelector('#conns tr[data-i="' + i + '"]');
    if (tr) tr.classList.add("sel");
  }

  var currentRows = [];
  function update() {
    currentRows = filtered();
    drawCounts(currentRows);
    drawScatter(currentRows);
    drawTable(currentRows);
  }
  var timer = null;
  input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(update, 150); });
  failedOnly.addEventListener("change", update);
  // A link can carry a filter (#filter=outcome%3Dreset) or a connection (#conn-12).
  var f = /^#filter=(.*)$/.exec(location.hash);
  if (f) input.value = decodeURIComponent(f[1]);
  update();
  var m = /^#conn-(\d+)$/.exec(location.hash);
  if (m) {
    var want = +m[1];
    for (var i = 0; i < N; i++) if (num("index", i) === want) { select(i); break; }
    var sec = document.getElementById("detail");
    if (sec.getBoundingClientRect().top > innerHeight) sec.scrollIntoView();
  }
})();
