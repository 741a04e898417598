/* What the referral pages share (window.Referral): the API with the shell's session, labels, badges and links.
   Sign-in, form errors and the ID number hint come from the shell's dom.js. Plain ES2017, no build step. */
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

  function signIn() { return dom.signIn(cfg.shell); }

  async function api(method, path, body) {
    try {
      return await session.api(method, path.charAt(0) === "/" && path.indexOf("/api/") === 0 ? path : cfg.api + path, body);
    } catch (e) {
      if (e.status === 401) return signIn(); // session.js already tried the refresh token once
      throw e;
    }
  }

  async function upload(path, form) {
    // Multipart (session.api speaks JSON only): the same bearer token, the same error shape.
    var t = session.tokens();
    var reply;
    try {
      reply = await fetch(cfg.api + path, {
        method: "POST", body: form, credentials: "same-origin",
        headers: { Accept: "application/json", Authorization: "Bearer " + (t && t.access_token) },
      });
    } catch (e) {
      throw new session.ApiFailure(0, "network", "网络异常，请检查网络后重试");
    }
    var data = null;
    try { data = await reply.json(); } catch (e) { /* empty or non-JSON body */ }
    if (!reply.ok) {
      var err = (data && data.error) || {};
      throw new session.ApiFailure(reply.status, err.code || "http_" + reply.status,
        err.message || "上传失败（" + reply.status + "）", err.field || "file", err.details);
    }
    return data;
  }

  var ready = dom.ready, notice = dom.notice;
  function failure(e) { return dom.failure(e, "未找到该转诊，或不在您的范围内"); }

  var STATES = labels(cfg.states), PRIORITIES = labels(cfg.priorities), DIRECTIONS = labels(cfg.directions);

  function stateBadge(state, name) { return el("span", { class: "badge " + state, text: name || STATES[state] || state }); }
  function priorityBadge(priority, name) {
    // Routine needs no badge; 绿色通道 stands out.
    if (priority === "routine") return null;
    return el("span", { class: "badge p-" + priority, text: name || PRIORITIES[priority] || priority });
  }
  function referralUrl(id) { return cfg.referral + id; }
  function when(iso) {
    if (!iso) return "";
    var d = new Date(iso);
    var pad = function (n) { return n < 10 ? "0" + n : "" + n; };
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + pad(d.getHours()) + ":" +
      pad(d.getMinutes());
  }
  function options(select, pairs, blank) {
    select.textContent = "";
    if (blank !== undefined) select.appendChild(el("option", { value: "", text: blank }));
    pairs.forEach(function (p) { select.appendChild(el("option", { value: String(p[0]), text: p[1] })); });
  }

  window.Referral = {
    cfg: cfg, $: $, el: el, api: api, upload: upload, ready: ready, notice: notice, failure: failure, status: dom.status,
    clearErrors: dom.clearErrors, showErrors: dom.showErrors, checkIdNumber: dom.checkIdNumber,
    stateBadge: stateBadge, priorityBadge: priorityBadge, referralUrl: referralUrl, when: when, options: options,
    labels: labels, STATES: STATES, PRIORITIES: PRIORITIES, DIRECTIONS: DIRECTIONS, signedIn: !!session.tokens(),
  };

  if (!session.tokens()) signIn();
})();
