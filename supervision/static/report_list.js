/* 我的填报 (/h5/apps/supervision/reports): the caller's manual reports, newest first, filtered by state (待审批,
   已计入, 已退回 with the reason), each opening its report; 指标填报 starts a new one. */
(function () {
  "use strict";

  var S = window.Sup;
  var cfg = S.cfg, $ = S.$, el = S.el;
  var PAGE = 20;

  function query() {
    var q = new URLSearchParams(window.location.search);
    return { state: q.get("state") || "", page: Math.max(1, Number(q.get("page")) || 1) };
  }

  function go(changes) {
    window.location.assign(S.link(cfg.reports, Object.assign(query(), changes)));
  }

  function row(report) {
    var when = new Date(report.received_at).toLocaleString("zh-CN", { hour12: false });
    return el("li", { "data-id": String(report.id), "data-state": report.state }, [
      el("a", { class: "r-title", href: cfg.report + report.id, text: report.unit.name + " " + report.period }),
      el("span", { class: "state " + report.state, text: report.state_name || report.state }),
      el("small", { text: report.items.length + " 项 · " + when }),
      report.state === "pending" && report.evidence_missing.length ? el("span", { class: "need", text: "待上传佐证材料" }) : null,
      report.state === "refused" && report.decision_reason ? el("span", { class: "reason", text: "退回原因：" + report.decision_reason }) : null,
    ]);
  }

  async function load() {
    var q = query();
    try {
      var data = await S.api("/reports", { state: q.state, page: q.page, page_size: PAGE });
    } catch (e) {
      return S.failure(e);
    }
    var states = $("states");
    states.textContent = "";
    [["", "全部"]].concat(cfg.states).forEach(function (p) {
      var b = el("button", { type: "button", class: "count", "data-state": p[0], "aria-pressed": String(q.state === p[0]), text: p[1] });
      b.onclick = function () { go({ state: p[0], page: 1 }); };
      states.appendChild(b);
    });
    var list = $("list");
    list.textContent = "";
    data.items.forEach(function (r) { list.appendChild(row(r)); });
    $("empty").hidden = data.items.length > 0;
    var pager = $("pager");
    pager.textContent = "";
    var pages = Math.max(1, Math.ceil(data.total / data.page_size));
    if (pages > 1) {
      var prev = el("button", { type: "button", class: "btn plain", text: "上一页" });
      var next = el("button", { type: "button", class: "btn plain", text: "下一页" });
      prev.disabled = q.page <= 1;
      next.disabled = q.page >= pages;
      prev.onclick = function () { go({ page: q.page - 1 }); };
      next.onclick = function () { go({ page: q.page + 1 }); };
      pager.append(prev, el("span", { text: q.page + " / " + pages }), next);
    }
    S.ready();
  }

  if (S.signedIn) load();
})();
