/* 我的任务 (/h5/apps/precision_control/): the caller's tasks, masked, with the API's counts as filter chips — 全部待办,
   待接收, 已接收, 处理中, 即将到期, 已逾期, 已完成 — a campaign filter and paging. The filters live in the address, so
   back from a task returns to the same view. Administrators also see their institutions' tasks (a toggle narrows
   to their own) and a link to the index dashboard. */
(function () {
  "use strict";

  var P = window.PrecisionControl;
  var cfg = P.cfg, $ = P.$, el = P.el;
  var PER_PAGE = 20;
  // Chip → API query and how its count is read from `counts` (by state, plus "overdue" and "soon").
  var FILTERS = [
    { key: "open", label: "全部待办", query: { state: "open" }, count: cfg.openStates },
    { key: "assigned", label: "待接收", query: { state: "assigned" }, count: ["assigned"] },
    { key: "accepted", label: "已接收", query: { state: "accepted" }, count: ["accepted"] },
    { key: "in_progress", label: "处理中", query: { state: "in_progress" }, count: ["in_progress"] },
    { key: "soon", label: "即将到期", query: { due: "soon" }, count: ["soon"] },
    { key: "overdue", label: "已逾期", query: { due: "overdue" }, count: ["overdue"] },
    { key: "finished", label: "已完成", query: { state: "finished" }, count: cfg.finishedStates },
  ];
  var BY_KEY = {};
  FILTERS.forEach(function (f) { BY_KEY[f.key] = f; });
  var admin = false;

  function query() {
    var q = new URLSearchParams(window.location.search);
    return {
      filter: BY_KEY[q.get("filter")] ? q.get("filter") : "open",
      campaign_id: q.get("campaign_id") || "",
      mine: q.get("mine") === "1" ? "1" : "",
      page: Math.max(1, Number(q.get("page")) || 1),
    };
  }

  function go(changes) {
    var next = Object.assign(query(), changes);
    if (!("page" in changes)) next.page = 1;
    var q = new URLSearchParams();
    Object.keys(next).forEach(function (k) {
      if (next[k] && !(k === "page" && next[k] === 1) && !(k === "filter" && next[k] === "open")) q.set(k, next[k]);
    });
    window.history.replaceState(null, "", window.location.pathname + (q.toString() ? "?" + q : ""));
    load();
  }

  function row(item) {
    return el("li", { "data-id": String(item.id), "data-state": item.state, class: item.overdue ? "overdue" : "" }, [
      el("a", { class: "row", href: P.taskUrl(item.id) }, [
        el("span", { class: "line" }, [
          el("b", { class: "name", text: item.name_masked || "（已匿名）" }),
          P.stateBadge(item.state),
          P.priorityBadge(item.priority),
          item.positive ? el("span", { class: "badge positive", text: "阳性" }) : null,
          el("span", { class: "badge", text: item.category }),
        ]),
        el("span", { class: "line" }, [P.dueLine(item), el("small", { text: item.phone_masked || "" })]),
        el("span", { class: "line" }, [
          el("small", { text: item.campaign_name }),
          item.member_name ? el("small", { text: "承办：" + item.member_name }) : null,
        ]),
      ]),
    ]);
  }

  function chips(counts, current) {
    var box = $("counts");
    box.textContent = "";
    FILTERS.forEach(function (f) {
      var n = f.count.reduce(function (sum, key) { return sum + (counts[key] || 0); }, 0);
      var b = el("button", { type: "button", class: "count", "data-filter": f.key, "aria-pressed": String(current === f.key) },
        [f.label, el("b", { text: String(n) })]);
      b.onclick = function () { go({ filter: f.key }); };
      box.appendChild(b);
    });
  }

  function pager(total, page) {
    var box = $("pager");
    box.textContent = "";
    var pages = Math.max(1, Math.ceil(total / PER_PAGE));
    if (pages < 2) return;
    var prev = el("button", { type: "button", class: "btn plain", id: "prev", text: "上一页" });
    var next = el("button", { type: "button", class: "btn plain", id: "next", text: "下一页" });
    prev.disabled = page <= 1;
    next.disabled = page >= pages;
    prev.onclick = function () { go({ page: page - 1 }); };
    next.onclick = function () { go({ page: page + 1 }); };
    box.append(prev, el("span", { id: "page-of", text: "第 " + page + " / " + pages + " 页" }), next);
  }

  var loading = 0;
  async function load() {
    var q = query(), mine = ++loading;
    $("f-campaign").value = q.campaign_id;
    $("f-mine").checked = !!q.mine;
    var params = new URLSearchParams({ limit: String(PER_PAGE), offset: String((q.page - 1) * PER_PAGE) });
    var f = BY_KEY[q.filter];
    Object.keys(f.query).forEach(function (k) { params.set(k, f.query[k]); });
    if (q.campaign_id) params.set("campaign_id", q.campaign_id);
    if (q.mine || !admin) params.set("mine", "true");
    try {
      var data = await P.api("GET", "/tasks?" + params);
    } catch (e) {
      return P.failure(e);
    }
    if (mine !== loading) return; // a newer filter's answer is on its way
    P.notice("");
    chips(data.counts || {}, q.filter);
    $("tasks").textContent = "";
    data.items.forEach(function (item) { $("tasks").appendChild(row(item)); });
    $("empty").hidden = data.items.length > 0;
    $("total").textContent = "共 " + data.total + " 项";
    pager(data.total, q.page);
    P.ready();
  }

  async function campaigns() {
    // The campaigns the caller can read, newest first; without them the filter stays "全部专项".
    try {
      var data = await P.api("GET", "/campaigns?per_page=100");
    } catch (e) {
      return;
    }
    var select = $("f-campaign");
    data.items.forEach(function (c) { select.appendChild(el("option", { value: String(c.id), text: c.name })); });
  }

  async function who() {
    // Administrators oversee institutions' tasks and read the index; the API decides, this only shapes the page.
    try {
      var me = await P.api("GET", "/api/me");
    } catch (e) {
      return;
    }
    admin = (me.roles || []).some(function (r) { return r.code === "admin" || r.code === "institution_admin"; });
    $("mine-field").hidden = !admin;
    $("dashboard-link").hidden = !(me.roles || []).some(function (r) { return r.code === "admin"; });
  }

  async function start() {
    $("f-campaign").onchange = function () { go({ campaign_id: this.value }); };
    $("f-mine").onchange = function () { go({ mine: this.checked ? "1" : "" }); };
    await Promise.all([who(), campaigns()]);
    var wanted = query().campaign_id;
    if (wanted && !$("f-campaign").querySelector('option[value="' + wanted + '"]')) {
      $("f-campaign").appendChild(el("option", { value: wanted, text: "专项 #" + wanted }));
    }
    load();
  }

  if (P.signedIn) start();
})();
