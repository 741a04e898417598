/* What the 精密智控 pages share (window.PrecisionControl): the API with the shell's session, labels, badges, times
   and links. Sign-in and form errors come from the shell's dom.js. Plain ES2017, no build step. */
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

  async function api(method, path, body) {
    try {
      return await session.api(method, path.indexOf("/api/") === 0 ? path : cfg.api + path, body);
    } catch (e) {
      if (e.status === 401) return signIn(); // session.js already tried the refresh token once
      throw e;
    }
  }

  function failure(e) { return dom.failure(e, "未找到该任务，或不在您的范围内"); }

  var STATES = labels(cfg.states), PRIORITIES = labels(cfg.priorities), EVENTS = labels(cfg.events);

  function stateBadge(state) { return el("span", { class: "badge " + state, text: STATES[state] || state }); }
  function priorityBadge(priority) {
    // Routine needs no badge; 紧急 stands out.
    if (!priority || priority === "routine") return null;
    return el("span", { class: "badge p-" + priority, text: PRIORITIES[priority] || priority });
  }
  function taskUrl(id) { return cfg.task + id; }

  function pad(n) { return n < 10 ? "0" + n : "" + n; }
  function when(iso) {
    if (!iso) return "";
    var d = new Date(iso);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + pad(d.getHours()) + ":" +
      pad(d.getMinutes());
  }
  function dueText(task) {
    // "截止 11-26 18:00", "已逾期 · 截止 …" for open tasks past due (the API's `overdue`).
    if (!task.due_at) return "";
    return (task.overdue ? "已逾期 · " : "") + "截止 " + when(task.due_at);
  }
  function dueLine(task) {
    return el("span", { class: "due" + (task.overdue ? " overdue" : ""), text: dueText(task) });
  }
  function options(select, pairs, blank) {
    select.textContent = "";
    if (blank !== undefined) select.appendChild(el("option", { value: "", text: blank }));
    pairs.forEach(function (p) { select.appendChild(el("option", { value: String(p[0]), text: p[1] })); });
  }

  window.PrecisionControl = {
    cfg: cfg, $: $, el: el, api: api, ready: dom.ready, notice: dom.notice, failure: failure, status: dom.status,
    clearErrors: dom.clearErrors, showErrors: dom.showErrors, labels: labels, stateBadge: stateBadge,
    priorityBadge: priorityBadge, taskUrl: taskUrl, when: when, dueText: dueText, dueLine: dueLine,
    options: options, STATES: STATES, PRIORITIES: PRIORITIES, EVENTS: EVENTS, signedIn: !!session.tokens(),
  };

  if (!session.tokens()) signIn();
})();
