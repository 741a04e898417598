/* What the index dashboard shares (window.PcDash): the API with the shell's session (a 401 goes through the
   shell's sign-in and back), the state in the address, number formatting, the five colours and the lazily loaded
   ECharts. Errors and sign-in come from the shell's dom.js. Plain ES2017, no build step. */
(function () {
  "use strict";

  var cfg = JSON.parse(document.getElementById("wb-config").textContent);
  var session = window.WorkbenchSession;
  var dom = window.WorkbenchDom;
  var $ = function (id) { return document.getElementById(id); };

  function signIn() { return dom.signIn(cfg.shell); }

  function clean(params) {
    var out = {};
    Object.keys(params || {}).forEach(function (k) {
      if (params[k] !== null && params[k] !== undefined && params[k] !== "") out[k] = String(params[k]);
    });
    return out;
  }

  async function api(path, params) {
    var q = new URLSearchParams(clean(params)).toString();
    try {
      return await session.api("GET", cfg.api + path + (q ? "?" + q : ""));
    } catch (e) {
      if (e.status === 401) return signIn(); // session.js already tried the refresh token once
      throw e;
    }
  }

  function query() {
    var q = new URLSearchParams(window.location.search);
    return { campaign_id: q.get("campaign_id") || "", node_id: q.get("node_id") || "" };
  }

  function link(params) {
    var q = new URLSearchParams(clean(params)).toString();
    return cfg.home + (q ? "?" + q : "");
  }

  // Numbers as the page shows them: at most two decimals (trailing zeros dropped), thousands separated, a dash for
  // none. tests/precision_control/test_dashboard_page.py formats the API's numbers the same way.
  function number(v) {
    if (v === null || v === undefined) return "—";
    var text = Number(v).toFixed(2).replace(/\.?0+$/, "");
    if (text === "-0") text = "0";
    var parts = text.split(".");
    parts[0] = parts[0].replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return parts.join(".");
  }

  var COLOURS = {};
  cfg.colours.forEach(function (p) { COLOURS[p[0]] = p[1]; });
  var MEASURES = {};
  cfg.measures.forEach(function (p) { MEASURES[p[0]] = p[1]; });

  function colourName(colour) { return colour ? COLOURS[colour] + "色" : "无数据"; }

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

  function failure(e) { return dom.failure(e, "未找到该专项任务或单位，或不在您的范围内"); }

  window.PcDash = {
    cfg: cfg, $: $, el: dom.el, api: api, query: query, link: link, number: number, colourName: colourName,
    COLOURS: COLOURS, MEASURES: MEASURES, echarts: echarts, failure: failure, ready: dom.ready, status: dom.status,
    signedIn: !!session.tokens(),
  };

  if (!session.tokens()) signIn();
})();
