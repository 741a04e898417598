/* What the 补偿机制改革 pages share (window.Comp): the API with the shell's session, labels, state badges, times,
   exact decimal sums and display, the Excel download (the bearer token must go along, so fetch and save the
   blob) and where the caller stands (counties they settle, institutions they administer, whether they administer
   a given institution). Sign-in and form errors
   come from the shell's dom.js. Plain ES2017, no build step. */
(function () {
  "use strict";

  var cfg = JSON.parse(document.getElementById("wb-config").textContent);
  var session = window.WorkbenchSession;
  var dom = window.WorkbenchDom;
  var $ = function (id) { return document.getElementById(id); };
  var el = dom.el;

  function labels(pairs) {
    var out = {};
    (pairs || []).forEach(function (p) { out[p[0]] = p[1]; });
    return out;
  }

  function signIn() { return dom.signIn(cfg.shell); }

  function clean(params) {
    var out = {};
    Object.keys(params || {}).forEach(function (k) {
      if (params[k] !== null && params[k] !== undefined && params[k] !== "") out[k] = String(params[k]);
    });
    return out;
  }

  function withQuery(path, params) {
    var q = new URLSearchParams(clean(params)).toString();
    return path + (q ? "?" + q : "");
  }

  async function api(method, path, body) {
    try {
      return await session.api(method, path.indexOf("/api/") === 0 ? path : cfg.api + path, body);
    } catch (e) {
      if (e.status === 401) return signIn(); // session.js already tried the refresh token once
      throw e;
    }
  }

  function failure(e) { return dom.failure(e, "未找到该结算，或不在您的范围内"); }

  var STATES = labels(cfg.states), KINDS = labels(cfg.kinds), PACKAGES = labels(cfg.packages);

  function stateBadge(state, label) {
    return el("span", { class: "badge s-" + (state || "none"), "data-state": state || "", text: label || STATES[state] || state || "未结算" });
  }

  function pad(n) { return n < 10 ? "0" + n : "" + n; }
  function when(iso) {
    if (!iso) return "";
    var d = new Date(iso);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + pad(d.getHours()) + ":" +
      pad(d.getMinutes());
  }
  function who(by, at) {
    // A name where the API knows one; else an audit actor ("<corp>:<userid>") or a userid, shown as the userid.
    var name = by && by.indexOf(":") >= 0 ? by.slice(by.lastIndexOf(":") + 1) : by;
    return [name, when(at)].filter(Boolean).join(" · ");
  }

  // -- decimals: the API sends money (2 places) and 当量 (4 places) as strings; the page never rounds them -------

  function scaled(text, places) {
    // "1234.5" at 4 places → 12345000 (an integer: exact while below 2^53, i.e. ~9e11 当量 or ~9e13 yuan).
    var s = String(text).trim(), negative = s[0] === "-";
    if (negative || s[0] === "+") s = s.slice(1);
    var parts = s.split(".");
    var frac = (parts[1] || "").padEnd(places, "0");
    if (frac.length > places) throw new Error("more than " + places + " decimal places: " + text);
    var n = Number(parts[0] || "0") * Math.pow(10, places) + Number(frac || "0");
    return negative ? -n : n;
  }

  function unscaled(n, places) {
    var negative = n < 0, digits = String(Math.abs(n)).padStart(places + 1, "0");
    var text = places ? digits.slice(0, -places) + "." + digits.slice(-places) : digits;
    return (negative ? "-" : "") + text;
  }

  function sum(values, places) {
    // The exact sum of decimal strings, with `places` decimals (the API's own).
    var total = 0;
    values.forEach(function (v) { if (v !== null && v !== undefined && v !== "") total += scaled(v, places); });
    return unscaled(total, places);
  }

  function grouped(text) {
    // The API's decimal string with thousands separators; digits after the point are kept as they are.
    if (text === null || text === undefined || text === "") return "—";
    var s = String(text), sign = s[0] === "-" ? "-" : "";
    var parts = s.replace(/^[-+]/, "").split(".");
    parts[0] = parts[0].replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return sign + parts.join(".");
  }

  function money(text) { return text === null || text === undefined ? "—" : grouped(text); }

  // -- the Excel exports ---------------------------------------------------------------------------------------

  async function download(url, fallbackName) {
    var t = session.tokens();
    var reply;
    try {
      reply = await fetch(url, { headers: { Authorization: "Bearer " + (t && t.access_token) }, credentials: "same-origin" });
    } catch (e) {
      throw new session.ApiFailure(0, "network", "网络异常，请检查网络后重试");
    }
    if (!reply.ok) {
      var data = null;
      try { data = await reply.json(); } catch (e) { /* not JSON */ }
      var err = (data && data.error) || {};
      if (reply.status === 401) return signIn();
      throw new session.ApiFailure(reply.status, err.code || "http_" + reply.status, err.message || "导出失败（" + reply.status + "）", err.field);
    }
    var name = fallbackName;
    var m = /filename\*=UTF-8''([^;]+)/.exec(reply.headers.get("Content-Disposition") || "");
    if (m) name = decodeURIComponent(m[1]);
    var blob = URL.createObjectURL(await reply.blob());
    var a = el("a", { href: blob, download: name });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(blob); }, 60000);
  }

  function exportLink(a, url, fallbackName) {
    // A real link (its address says what it exports), followed with the token by script.
    a.href = url;
    a.onclick = function (ev) {
      ev.preventDefault();
      download(url, fallbackName).catch(function (e) { dom.notice(e.message); });
    };
  }

  // -- where the caller stands -----------------------------------------------------------------------------------

  async function children(nodeId) {
    var out = [], page = 1;
    for (;;) {
      var reply = await api("GET", withQuery("/api/org/nodes/" + nodeId + "/children", { page: page, page_size: 200 }));
      out = out.concat(reply.items || []);
      if (!reply.items || !reply.items.length || out.length >= (reply.total || 0)) return out;
      page += 1;
    }
  }

  async function places() {
    // From the caller's roles (`/api/me`) and their nodes (`/api/org/nodes/<id>`: level and ancestors):
    // `counties` the county bureaus they read as a county (administrators and finance officers of the bureau,
    // or of a commission above it: the commission's counties), each with `writer` when they may settle;
    // `institutions` those they administer, with their county. The API still decides every call.
    var me = await api("GET", "/api/me");
    var counties = {}, institutions = {};
    var roles = (me.roles || []).filter(function (r) { return cfg.readerRoles.indexOf(r.code) >= 0; });
    function county(node, writer) {
      var c = counties[node.id] || (counties[node.id] = { id: node.id, name: node.name, writer: false });
      c.writer = c.writer || writer;
    }
    for (var i = 0; i < roles.length; i++) {
      var role = roles[i], writer = cfg.writerRoles.indexOf(role.code) >= 0;
      var node = await api("GET", "/api/org/nodes/" + role.node_id);
      if (node.level === cfg.countyLevel && role.code !== "institution_admin") {
        county(node, writer);
      } else if (cfg.institutionLevels.indexOf(node.level) >= 0) {
        var above = (node.ancestors || []).filter(function (a) { return a.level === cfg.countyLevel; }).pop();
        if (above) institutions[node.id] = { id: node.id, name: node.name, county_id: above.id, county_name: above.name };
      } else if (cfg.administrativeLevels.indexOf(node.level) >= 0 && role.code !== "institution_admin") {
        // A commission: its counties, directly below or below its cities.
        var below = await children(node.id);
        for (var j = 0; j < below.length; j++) {
          if (below[j].level === cfg.countyLevel) county(below[j], writer);
          else if (cfg.administrativeLevels.indexOf(below[j].level) >= 0) {
            (await children(below[j].id)).forEach(function (c) { if (c.level === cfg.countyLevel) county(c, writer); });
          }
        }
      }
    }
    return {
      me: me,
      counties: Object.keys(counties).map(function (k) { return counties[k]; }),
      institutions: Object.keys(institutions).map(function (k) { return institutions[k]; }),
    };
  }

  async function administers(institutionId) {
    // Whether the caller administers the institution itself (an institution administrator's role on its node:
    // a lead hospital's administrators do not run its member institutions' distributions). The pages then offer
    // what only the institution may do; the API still decides every call.
    var me = await api("GET", "/api/me");
    return (me.roles || []).some(function (r) {
      return cfg.managerRoles.indexOf(r.code) >= 0 && r.node_id === institutionId;
    });
  }

  function options(select, pairs, blank) {
    select.textContent = "";
    if (blank !== undefined) select.appendChild(el("option", { value: "", text: blank }));
    pairs.forEach(function (p) { select.appendChild(el("option", { value: String(p[0]), text: p[1] })); });
  }

  function settlementUrl(id) { return cfg.settlement + id; }
  function distributionUrl(settlementId) { return cfg.settlement + settlementId + "/distribution"; }
  function homeUrl(params) { return withQuery(cfg.home, params); }

  window.Comp = {
    cfg: cfg, $: $, el: el, api: api, withQuery: withQuery, ready: dom.ready, notice: dom.notice, failure: failure,
    status: dom.status, clearErrors: dom.clearErrors, showErrors: dom.showErrors, labels: labels,
    stateBadge: stateBadge, when: when, who: who, sum: sum, grouped: grouped, money: money, exportLink: exportLink,
    places: places, options: options, settlementUrl: settlementUrl, homeUrl: homeUrl, STATES: STATES, KINDS: KINDS,
    PACKAGES: PACKAGES, signedIn: !!session.tokens(), administers: administers, distributionUrl: distributionUrl,
    DISTRIBUTION_STATES: labels(cfg.distributionStates),
  };

  if (!session.tokens()) signIn();
})();
