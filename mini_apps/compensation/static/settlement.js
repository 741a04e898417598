/* One settlement (/h5/apps/compensation/settlements/<id>): who it is for and its state; every figure with how the
   API says it was computed (当量 and 单价 per package, 绩效系数, 购买金额, 专项补助, 差额补助, 已拨预拨, 应拨付); the
   lines by package (核定数量, 剔除, 当量, 当量合计) where a line's excluded units open the exclusions behind them
   (business record, month, units, rule, reason; paged); the revision history of the institution and period with
   the refusal reasons; 导出 Excel; 内部分配 of an approved settlement for the institution's administrators.
   Everything is the API's; the page only lays it out. */
(function () {
  "use strict";

  var C = window.Comp;
  var cfg = C.cfg, $ = C.$, el = C.el;
  var PAGE_SIZE = 50;
  var settlement = null;
  var names = {}; // item code → name, when the item list is readable

  function pair(dl, label, content, key) {
    if (content === null || content === undefined || content === "") return;
    dl.append(el("dt", { text: label }), el("dd", { "data-field": key }, [content]));
  }

  function details(s) {
    $("title").textContent = (s.institution_name || "") + " · " + (C.KINDS[s.kind] || s.kind) + " " + s.period;
    $("state").replaceChildren(C.stateBadge(s.state, s.state_label));
    document.title = (s.institution_name || "") + " " + s.period + " · 结算详情";
    var dl = $("details");
    dl.textContent = "";
    pair(dl, "结算类型", C.KINDS[s.kind] || s.kind, "kind");
    pair(dl, "期间", s.period, "period");
    pair(dl, "版本", "第 " + s.revision + " 版", "revision");
    pair(dl, "生成", C.who(s.created_by_name || s.created_by, s.created_at), "created");
    pair(dl, "提交审批", C.when(s.submitted_at), "submitted");
    pair(dl, "审批", C.who(s.decided_by_name || s.decided_by, s.decided_at), "decided");
    $("reason").hidden = !s.reason;
    $("reason").textContent = s.reason ? "退回原因：" + s.reason : "";
    C.exportLink($("export"), cfg.api + "/settlements/" + s.id + "/export.xlsx",
      (s.institution_name || "结算") + "_" + s.period + "_第" + s.revision + "版.xlsx");
    $("back").href = C.homeUrl({ county_id: s.county_id, kind: s.kind, period: s.period });
  }

  function figure(key, label, value, how, main) {
    return el("li", { "data-key": key, class: main ? "main" : "" }, [
      el("span", { class: "k", text: label }),
      el("span", { class: "v", "data-value": value === null || value === undefined ? "" : String(value), text: C.grouped(value) }),
      how ? el("span", { class: "how", text: how }) : null,
    ]);
  }

  function figures(s) {
    var how = s.computation || {}, snap = s.snapshot || {};
    var list = $("figures");
    list.textContent = "";
    cfg.packages.forEach(function (p) {
      var code = p[0];
      if (!(code in (s.equivalents || {}))) return;
      list.appendChild(figure("equivalents." + code, p[1] + " 当量", s.equivalents[code], (how.equivalents || {})[code]));
      list.appendChild(figure("prices." + code, p[1] + " 当量单价（元/当量）", (s.prices || {})[code], (how.prices || {})[code]));
    });
    list.appendChild(figure("coefficient", "绩效考核系数", s.coefficient, how.coefficient));
    list.appendChild(figure("purchase_amount", "购买金额（元）", s.purchase_amount, how.purchase_amount));
    var items = snap.line_items || [];
    list.appendChild(figure("line_item_amount", "专项补助（元）", s.line_item_amount,
      items.length ? "专项补助 " + items.length + " 笔之和" : "当期无专项补助"));
    if (s.gap_subsidy !== null && s.gap_subsidy !== undefined) {
      var missing = snap.fee_income_missing || [];
      list.appendChild(figure("fee_income", "医疗服务收入（元）", s.fee_income,
        missing.length ? "未填报月份按 0 计：" + missing.join("、") : ""));
      list.appendChild(figure("gap_subsidy", "差额补助（元）", s.gap_subsidy, how.gap_subsidy));
    }
    if (s.kind === "annual") list.appendChild(figure("advances_paid", "已拨预拨（元）", s.advances_paid, "当年已审定的月度预拨之和"));
    list.appendChild(figure("payable", "应拨付（元）", s.payable, how.payable, true));
  }

  function lines(s) {
    var box = $("lines");
    box.textContent = "";
    var byPackage = {};
    (s.lines || []).forEach(function (l) { (byPackage[l.package] = byPackage[l.package] || []).push(l); });
    var order = cfg.packages.map(function (p) { return p[0]; });
    Object.keys(byPackage).forEach(function (p) { if (order.indexOf(p) < 0) order.push(p); });
    order.forEach(function (p) {
      var rows = byPackage[p];
      if (!rows) return;
      var body = rows.map(function (l) {
        var excluded = Number(l.excluded) > 0
          ? el("button", { type: "button", class: "link excluded", "data-item": l.item_code, title: "查看剔除明细", text: C.grouped(l.excluded) })
          : C.grouped(l.excluded);
        if (typeof excluded === "object") excluded.onclick = function () { exclusions(l, 1); };
        return el("tr", { "data-item": l.item_code }, [
          el("td", { class: "name", "data-key": "item" }, [l.item_code + (names[l.item_code] ? " " + names[l.item_code] : "")]),
          el("td", { class: "num", "data-key": "quantity", "data-label": "核定数量", "data-value": l.quantity }, [C.grouped(l.quantity)]),
          el("td", { class: "num", "data-key": "excluded", "data-label": "剔除", "data-value": l.excluded }, [excluded]),
          el("td", { class: "num", "data-key": "equivalent", "data-label": "当量", "data-value": l.equivalent }, [C.grouped(l.equivalent)]),
          el("td", { class: "num", "data-key": "equivalents", "data-label": "当量合计", "data-value": l.equivalents }, [C.grouped(l.equivalents)]),
        ]);
      });
      var total = C.sum(rows.map(function (l) { return l.equivalents; }), 4);
      box.appendChild(el("div", { class: "package", "data-package": p }, [
        el("h3", { text: C.PACKAGES[p] || p }),
        el("div", { class: "table-wrap" }, [el("table", { class: "grid" }, [
          el("thead", {}, [el("tr", {}, [
            el("th", { text: "项目" }), el("th", { class: "num", text: "核定数量" }), el("th", { class: "num", text: "剔除" }),
            el("th", { class: "num", text: "当量" }), el("th", { class: "num", text: "当量合计" }),
          ])]),
          el("tbody", {}, body),
          el("tfoot", {}, [el("tr", {}, [
            el("td", { class: "name", text: "小计" }), el("td", {}), el("td", {}), el("td", {}),
            el("td", { class: "num", "data-key": "equivalents", "data-label": "当量合计", "data-value": total }, [C.grouped(total)]),
          ])]),
        ])]),
      ]));
    });
    if (!box.children.length) box.appendChild(el("p", { class: "empty", text: "没有项目明细" }));
  }

  async function exclusions(line, page) {
    var reply;
    try {
      reply = await C.api("GET", C.withQuery("/settlements/" + settlement.id + "/lines/" + encodeURIComponent(line.item_code) + "/exclusions",
        { page: page, page_size: PAGE_SIZE }));
    } catch (e) {
      return C.notice("加载剔除明细失败：" + e.message);
    }
    var card = $("exclusions-card");
    card.hidden = false;
    card.dataset.item = line.item_code;
    $("exclusions-title").textContent = line.item_code + (names[line.item_code] ? " " + names[line.item_code] : "") +
      " · 剔除 " + C.grouped(reply.excluded) + " · " + reply.total + " 条记录";
    var body = $("exclusions").querySelector("tbody");
    body.textContent = "";
    reply.items.forEach(function (x) {
      body.appendChild(el("tr", { "data-id": String(x.id) }, [
        el("td", { class: "name", "data-key": "record_ref", "data-label": "业务记录" }, [x.record_ref || "（无记录号）"]),
        el("td", { "data-key": "period", "data-label": "月份" }, [x.period]),
        el("td", { class: "num", "data-key": "units", "data-label": "剔除数量", "data-value": x.units }, [C.grouped(x.units)]),
        el("td", { "data-key": "rule", "data-label": "规则" }, [x.rule]),
        el("td", { "data-key": "reason", "data-label": "原因" }, [x.reason]),
      ]));
    });
    if (!reply.items.length) body.appendChild(el("tr", {}, [el("td", { class: "name", text: "没有剔除记录" })]));
    var pager = $("exclusions-pager");
    pager.textContent = "";
    var pages = Math.max(1, Math.ceil(reply.total / reply.page_size));
    if (pages > 1) {
      var prev = el("button", { type: "button", class: "btn plain", id: "exclusions-prev", text: "上一页" });
      var next = el("button", { type: "button", class: "btn plain", id: "exclusions-next", text: "下一页" });
      prev.disabled = page <= 1;
      next.disabled = page >= pages;
      prev.onclick = function () { exclusions(line, page - 1); };
      next.onclick = function () { exclusions(line, page + 1); };
      pager.append(prev, el("span", { text: page + " / " + pages }), next);
    }
    card.scrollIntoView({ block: "start" });
  }

  function history(s, items) {
    var body = $("history").querySelector("tbody");
    body.textContent = "";
    items.sort(function (a, b) { return b.revision - a.revision; });
    items.forEach(function (h) {
      var current = h.id === s.id;
      body.appendChild(el("tr", { "data-id": String(h.id), "data-state": h.state, class: current ? "current" : "" }, [
        el("td", { class: "name", "data-key": "revision" }, [current ? "第 " + h.revision + " 版（本页）" : el("a", { href: C.settlementUrl(h.id), text: "第 " + h.revision + " 版" })]),
        el("td", { "data-key": "state", "data-label": "状态" }, [C.stateBadge(h.state, h.state_label)]),
        el("td", { class: "num", "data-key": "payable", "data-label": "应拨付", "data-value": h.payable }, [C.money(h.payable)]),
        el("td", { "data-key": "created", "data-label": "生成" }, [C.who(h.created_by, h.created_at)]),
        el("td", { "data-key": "submitted", "data-label": "提交审批" }, [C.when(h.submitted_at)]),
        el("td", { "data-key": "decided", "data-label": "审批" }, [C.who(h.decided_by, h.decided_at)]),
        el("td", { class: "reason", "data-key": "reason", "data-label": "退回原因" }, [h.reason || ""]),
      ]));
    });
  }

  async function itemNames() {
    // Names beside the codes; the lines stand on their codes if the list cannot be read.
    try {
      var reply = await C.api("GET", C.withQuery("/items", { per_page: 1000 }));
      (reply.items || []).forEach(function (i) { if (i.name && i.name !== i.code) names[i.code] = i.name; });
    } catch (e) { /* codes only */ }
  }

  async function load() {
    var revisions;
    try {
      var got = await Promise.all([C.api("GET", "/settlements/" + cfg.settlementId), itemNames()]);
      settlement = got[0];
      revisions = await C.api("GET", C.withQuery("/counties/" + settlement.county_id + "/settlements",
        { kind: settlement.kind, period: settlement.period }));
    } catch (e) {
      return C.failure(e);
    }
    details(settlement);
    figures(settlement);
    lines(settlement);
    history(settlement, (revisions.items || []).filter(function (h) { return h.institution_id === settlement.institution_id; }));
    C.ready();
    await distributionLink(settlement);
  }

  async function distributionLink(s) {
    // 内部分配 (二次分配) of an approved settlement, offered to the institution's administrators: they divide it.
    if (s.state !== "approved") return;
    var manager = false;
    try { manager = await C.administers(s.institution_id); } catch (e) { /* no link */ }
    if (!manager || $("distribution-link")) return;
    $("export").after(el("a", { class: "primary", id: "distribution-link", href: C.distributionUrl(s.id), text: "内部分配" }));
  }

  if (C.signedIn) load();
})();
