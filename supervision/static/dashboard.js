/* 监管驾驶舱 (/h5/apps/supervision/): a node's indicators for a period, grouped by dimension, each against its
   target with completeness (tap → the units that have not reported); breadcrumbs up, the children to drill down
   to, period and dimension pickers, 导出 Excel. Node, period and dimension live in the address, so a link from an
   alert opens the same view and back returns to it. */
(function () {
  "use strict";

  var S = window.Sup;
  var cfg = S.cfg, $ = S.$, el = S.el;

  function go(changes) {
    var next = Object.assign(S.query(), changes);
    window.location.assign(S.link(cfg.home, next));
  }

  function card(item, nodeId, period) {
    var v = S.verdict(item);
    var list = el("ul", { class: "missing", hidden: "" });
    var reported = el("button", {
      type: "button", class: "badge " + S.completenessClass(item), "data-role": "completeness",
      "aria-expanded": "false", text: "已报 " + item.units_reported + "/" + item.units_expected,
    });
    reported.onclick = function () {
      var open = reported.getAttribute("aria-expanded") !== "true";
      reported.setAttribute("aria-expanded", String(open));
      list.hidden = !open;
      if (open && !list.dataset.loaded) {
        list.textContent = "";
        list.appendChild(el("li", { text: "正在加载…" }));
        S.missing(list, item.code, nodeId, period, 1).then(function (data) {
          list.dataset.loaded = "1";
          if (!data.items.length) list.appendChild(el("li", { text: "全部已上报" }));
          else if (data.total > data.items.length) list.appendChild(el("li", {}, [el("a", { href: S.link(cfg.indicator + encodeURIComponent(item.code), { node_id: nodeId, period: period }), text: "共 " + data.total + " 个，查看全部" })]));
        }).catch(S.failure);
      }
    };
    return el("article", { class: "ind " + v, "data-code": item.code }, [
      el("div", { class: "name" }, [
        el("a", { href: S.link(cfg.indicator + encodeURIComponent(item.code), { node_id: nodeId, period: period }), text: item.name }),
        S.verdictBadge(item),
      ]),
      el("div", { class: "figure" }, [
        el("span", { class: "value", "data-value": item.value === null ? "" : String(item.value), text: S.number(item.value) }),
        item.value === null ? null : el("small", { text: item.unit || "" }),
      ]),
      el("div", { class: "meta" }, [
        el("span", { class: "target", text: S.targetText(item) }),
        el("span", { class: "previous", text: "上期 " + S.number(item.previous) }),
        el("span", { class: "last-year", text: "去年同期 " + S.number(item.last_year) }),
        reported,
      ]),
      list,
    ]);
  }

  function groups(node, period, dimension) {
    var box = $("groups");
    box.textContent = "";
    var by = {};
    node.indicators.forEach(function (item) { (by[item.dimension] = by[item.dimension] || []).push(item); });
    cfg.dimensions.forEach(function (d) {
      if (!by[d[0]]) return;
      box.appendChild(el("section", { class: "dim", "data-dimension": d[0] }, [
        el("h2", { text: d[1] + " · " + by[d[0]].length + " 项" }),
        el("div", { class: "cards" }, by[d[0]].map(function (item) { return card(item, node.node_id, period); })),
      ]));
    });
    $("empty").hidden = node.indicators.length > 0;
  }

  async function load() {
    var q = S.query();
    try {
      var home = await S.api("/dashboard", { node_id: q.node_id });
      var period = q.period || home.periods.month;
      var kind = S.kindOf(period) || "month";
      var data = await S.api("/figures", { node_id: home.node.node_id, period: period, dimension: q.dimension });
    } catch (e) {
      return S.failure(e);
    }
    var keep = { period: data.period, dimension: q.dimension };
    S.trail(home.trail, cfg.home, keep);
    S.options($("f-kind"), cfg.kinds, kind);
    var latest = home.periods[kind];
    S.options($("f-period"), S.periods(kind, latest, data.period).map(function (p) { return [p, p]; }), data.period);
    $("f-dimension").value = q.dimension;
    $("f-kind").onchange = function () { go({ node_id: home.node.node_id, period: home.periods[this.value] }); };
    $("f-period").onchange = function () { go({ node_id: home.node.node_id, period: this.value }); };
    $("f-dimension").onchange = function () { go({ node_id: home.node.node_id, period: data.period, dimension: this.value }); };
    $("summary").textContent = "统计期 " + data.period + " · 对比上期 " + data.previous_period + "、去年同期 " + data.last_year_period;
    var chips = $("children");
    chips.textContent = "";
    home.children.forEach(function (c) {
      chips.appendChild(el("a", { class: "chip", "data-node": String(c.node_id), href: S.link(cfg.home, Object.assign({}, keep, { node_id: c.node_id })), text: c.name }));
    });
    $("children-box").hidden = home.children.length === 0;
    $("export").onclick = function () {
      var button = this;
      button.disabled = true;
      S.download("/figures/export.xlsx", { node_id: home.node.node_id, period: data.period }, "监管指标.xlsx")
        .catch(function (e) { S.notice(e.message); })
        .finally(function () { button.disabled = false; });
    };
    document.title = home.node.name + " · 监管驾驶舱";
    groups(data.node, data.period, q.dimension);
    S.ready();
  }

  function start() {
    cfg.dimensions.forEach(function (d) { $("f-dimension").appendChild(el("option", { value: d[0], text: d[1] })); });
    load();
  }

  if (S.signedIn) start();
})();
