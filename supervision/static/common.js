/* What the supervision pages share (window.Sup): the API with the shell's session, the node/period state in the
   address, number formatting, verdict colours, breadcrumbs, period options, the missing-units list and the
   lazily loaded ECharts. Sign-in and errors come from the shell's dom.js. Plain ES2017, no build step. */
(function () {
  "use strict";

  var cfg = JSON.parse(document.getElementById("wb-config").textContent);
  var session = window.WorkbenchSession;
  var dom = window.WorkbenchDom;
  var $ = function (id) { return document.getElementById(id); };
  var el = dom.el;

  function labels(pairs) {
    var out = {};
    pairs.forEach(function (p) { out[p[0]] = p[1]; });
    return out;
  }
  var DIMENSIONS = labels(cfg.dimensions), LEVELS = labels(cfg.levels), KINDS = labels(cfg.kinds);

  function signIn() { return dom.signIn(cfg.shell); }

  async function api(path, params) {
    var query = params ? "?" + new URLSearchParams(clean(params)) : "";
    try {
      return await session.api("GET", cfg.api + path + query);
    } catch (e) {
      if (e.status === 401) return signIn(); // session.js already tried the refresh token once
      throw e;
    }
  }

  function clean(params) {
    var out = {};
    Object.keys(params).forEach(function (k) { if (params[k] !== null && params[k] !== undefined && params[k] !== "") out[k] = String(params[k]); });
    return out;
  }

  function query() {
    var q = new URLSearchParams(window.location.search);
    return { node_id: q.get("node_id") || "", period: q.get("period") || "", dimension: q.get("dimension") || "" };
  }

  function link(base, params) {
    var q = new URLSearchParams(clean(params)).toString();
    return base + (q ? "?" + q : "");
  }

  // Numbers as the page shows them: at most two decimals (trailing zeros dropped), thousands separated.
  // tests/supervision/test_dashboard_browser.py formats the API's numbers the same way.
  function number(v) {
    if (v === null || v === undefined) return "—";
    var text = Number(v).toFixed(2).replace(/\.?0+$/, "");
    if (text === "-0") text = "0";
    var parts = text.split(".");
    parts[0] = parts[0].replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return parts.join(".");
  }

  // The verdict class: met, missed (more than 10% off the target), near (within 10%), none (no target or
  // monitored), nodata (no value).
  function verdict(item) {
    if (item.value === null || item.value === undefined) return "nodata";
    if (item.met === true) return "met";
    if (item.met === false) {
      var t = Math.abs(item.target) || 1;
      return Math.abs(item.value - item.target) / t <= 0.1 ? "near" : "missed";
    }
    return "none";
  }
  var VERDICTS = { met: "达标", missed: "未达标", near: "未达标", none: "无目标", nodata: "无数据" };
  function verdictBadge(item) {
    var v = verdict(item);
    var text = v === "none" && item.target !== null && item.target !== undefined ? "监测" : VERDICTS[v];
    return el("span", { class: "badge " + v, "data-verdict": v, text: text });
  }
  function targetText(item) {
    if (item.target === null || item.target === undefined) return "无目标";
    var sign = item.direction === "down" ? "≤ " : item.direction === "up" ? "≥ " : "";
    return "目标 " + sign + number(item.target) + (item.unit || "");
  }
  function completenessClass(item) {
    return item.units_expected && item.units_reported >= item.units_expected ? "full" : "partial";
  }

  function trail(nodes, base, extra) {
    var box = $("trail");
    box.textContent = "";
    nodes.forEach(function (n, i) {
      var last = i === nodes.length - 1;
      box.appendChild(el("li", {}, [last
        ? el("span", { "data-node": String(n.node_id), text: n.name })
        : el("a", { href: link(base, Object.assign({}, extra, { node_id: n.node_id })), "data-node": String(n.node_id), text: n.name })]));
    });
  }

  // The periods a picker offers: the latest complete one of the kind and those before it (two years of months,
  // three of quarters, five years), plus the one asked for if older.
  function periods(kind, latest, wanted) {
    var out = [], count = { month: 24, quarter: 12, year: 5 }[kind], p = latest;
    for (var i = 0; i < count; i++) { out.push(p); p = previous(p, kind); }
    if (wanted && out.indexOf(wanted) < 0 && kindOf(wanted) === kind) out.push(wanted);
    return out;
  }
  function kindOf(code) {
    if (/^\d{4}-\d{2}$/.test(code)) return "month";
    if (/^\d{4}-Q[1-4]$/.test(code)) return "quarter";
    if (/^\d{4}$/.test(code)) return "year";
    return null;
  }
  function previous(code, kind) {
    var y = Number(code.slice(0, 4));
    if (kind === "year") return String(y - 1);
    if (kind === "quarter") { var q = Number(code.slice(6)); return q > 1 ? y + "-Q" + (q - 1) : (y - 1) + "-Q4"; }
    var m = Number(code.slice(5));
    return m > 1 ? y + "-" + (m < 11 ? "0" : "") + (m - 1) : (y - 1) + "-12";
  }
  function before(code, n) {
    var kind = kindOf(code), p = code;
    for (var i = 0; i < n; i++) p = previous(p, kind);
    return p;
  }
  function options(select, pairs, value) {
    select.textContent = "";
    pairs.forEach(function (p) { select.appendChild(el("option", { value: String(p[0]), text: p[1] })); });
    if (value !== undefined) select.value = value;
  }

  // The units of `code` under `nodeId` that have not reported `period`, a page at a time, into `list`.
  async function missing(list, code, nodeId, period, page, pager) {
    var data = await api("/figures/" + encodeURIComponent(code) + "/completeness", { node_id: nodeId, period: period, page: page, per_page: 50 });
    list.textContent = "";
    data.items.forEach(function (u) {
      list.appendChild(el("li", { "data-node": String(u.node_id) }, [el("span", { class: "u-name", text: u.name }), el("small", { text: u.parent_name || "" })]));
    });
    if (pager) {
      pager.textContent = "";
      var pages = Math.max(1, Math.ceil(data.total / data.per_page));
      if (pages > 1) {
        var prev = el("button", { type: "button", class: "btn plain", text: "上一页" });
        var next = el("button", { type: "button", class: "btn plain", text: "下一页" });
        prev.disabled = page <= 1;
        next.disabled = page >= pages;
        prev.onclick = function () { missing(list, code, nodeId, period, page - 1, pager).catch(failure); };
        next.onclick = function () { missing(list, code, nodeId, period, page + 1, pager).catch(failure); };
        pager.append(prev, el("span", { text: page + " / " + pages }), next);
      }
    }
    return data;
  }

  var charts = null;
  function echarts() {
    // Loaded on first use (script-src 'self': the vendored file); null when it was not vendored.
    if (!cfg.charts) return Promise.resolve(null);
    if (!charts) {
      charts = new Promise(function (resolve) {
        var s = document.createElement("script");
        s.src = cfg.charts;
        s.onload = function () { resolve(window.echarts || null); };
        s.onerror = function () { resolve(null); };
        document.head.appendChild(s);
      });
    }
    return charts;
  }

  async function download(path, params, fallbackName) {
    // The bearer token must go with the request, so not a plain link: fetch, then save the blob.
    var t = session.tokens();
    var reply;
    try {
      reply = await fetch(cfg.api + path + "?" + new URLSearchParams(clean(params)), {
        headers: { Authorization: "Bearer " + (t && t.access_token) }, credentials: "same-origin",
      });
    } catch (e) {
      throw new session.ApiFailure(0, "network", "网络异常，请检查网络后重试");
    }
    if (!reply.ok) {
      var data = null;
      try { data = await reply.json(); } catch (e) { /* not JSON */ }
      var err = (data && data.error) || {};
      throw new session.ApiFailure(reply.status, err.code || "http_" + reply.status, err.message || "导出失败（" + reply.status + "）", err.field);
    }
    var name = fallbackName;
    var disposition = reply.headers.get("Content-Disposition") || "";
    var m = /filename\*=UTF-8''([^;]+)/.exec(disposition);
    if (m) name = decodeURIComponent(m[1]);
    var url = URL.createObjectURL(await reply.blob());
    var a = el("a", { href: url, download: name });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
  }

  function failure(e) { return dom.failure(e, "未找到该单位，或不在您的范围内"); }

  window.Sup = {
    cfg: cfg, $: $, el: el, api: api, query: query, link: link, number: number, verdict: verdict,
    verdictBadge: verdictBadge, targetText: targetText, completenessClass: completenessClass, trail: trail,
    periods: periods, kindOf: kindOf, before: before, options: options, missing: missing, echarts: echarts,
    download: download, failure: failure, ready: dom.ready, notice: dom.notice, status: dom.status,
    DIMENSIONS: DIMENSIONS, LEVELS: LEVELS, KINDS: KINDS, signedIn: !!session.tokens(),
  };

  if (!session.tokens()) signIn();
})();
