/* 防控指数看板 (/h5/apps/precision_control/dashboard/?campaign_id=&node_id=): the campaign picker, the node's
   headline figures and colour, the colour grid of the counties at or below it (tap → that county), its children
   (tap → that child), the trend of its daily snapshots with today live, breadcrumbs up. Campaign and node live in
   the address, so the daily message's link opens the same view. */
(function () {
  "use strict";

  var D = window.PcDash;
  var cfg = D.cfg, $ = D.$, el = D.el;
  var FIGURES = [
    ["tasks", "任务", false], ["completed", "已完成", false], ["completion_rate", "完成率", true],
    ["on_time_rate", "按时完成率", true], ["overdue", "逾期", false], ["overdue_share", "逾期占比", true],
    ["positive", "阳性发现", false], ["open", "未完成", false],
  ];

  function valueAttr(v) { return v === null || v === undefined ? "" : String(v); }

  function badge(colour) {
    return el("span", { class: "badge c-" + (colour || "none"), "data-colour": colour || "", text: D.colourName(colour) });
  }

  function campaigns(list, current) {
    var select = $("f-campaign");
    select.textContent = "";
    list.forEach(function (c) {
      select.appendChild(el("option", { value: String(c.id), text: c.name + "（" + (c.owner_name || "") + "·" + c.state_label + "）" }));
    });
    select.value = String(current);
    select.onchange = function () { window.location.assign(D.link({ campaign_id: this.value })); };
  }

  function trail(campaignId, nodes) {
    var box = $("trail");
    box.textContent = "";
    nodes.forEach(function (n, i) {
      var last = i === nodes.length - 1;
      box.appendChild(el("li", {}, [last
        ? el("span", { "data-node": String(n.node_id), text: n.name })
        : el("a", { href: D.link({ campaign_id: campaignId, node_id: n.node_id }), "data-node": String(n.node_id), text: n.name })]));
    });
  }

  function headline(data) {
    var node = data.node, c = data.campaign;
    $("node-name").textContent = node.name;
    $("node-value").textContent = D.number(node.value) + (node.value === null ? "" : "%");
    $("node-value").dataset.value = valueAttr(node.value);
    $("measure").textContent = c.measure_label;
    var colour = $("node-colour");
    colour.className = "badge c-" + (node.colour || "none");
    colour.dataset.colour = node.colour || "";
    colour.textContent = D.colourName(node.colour);
    var list = $("figures");
    list.textContent = "";
    FIGURES.forEach(function (f) {
      var v = node[f[0]];
      list.appendChild(el("li", { "data-key": f[0] }, [
        el("span", { class: "k", text: f[1] }),
        el("span", { class: "v", "data-value": valueAttr(v), text: D.number(v) + (f[2] && v !== null ? "%" : "") }),
      ]));
    });
    var t = c.thresholds;
    $("rule").textContent = "指数口径：" + c.measure_label + (c.measure === "overdue_share"
      ? "，≤" + t[0] + " 绿，≤" + t[1] + " 蓝，≤" + t[2] + " 黄，≤" + t[3] + " 橙，其余红"
      : "，<" + t[0] + " 红，<" + t[1] + " 橙，<" + t[2] + " 黄，<" + t[3] + " 蓝，其余绿");
  }

  function grid(campaignId, data) {
    var box = $("grid");
    box.textContent = "";
    data.counties.forEach(function (c) {
      var tile = el("button", {
        type: "button", class: "tile c-" + (c.colour || "none"), "data-node": String(c.node_id), "data-colour": c.colour || "",
        title: c.name + " " + D.colourName(c.colour),
      }, [
        el("span", { class: "t-name", text: c.name }),
        el("span", { class: "t-value", "data-value": valueAttr(c.value), text: D.number(c.value) }),
      ]);
      tile.onclick = function () { window.location.assign(D.link({ campaign_id: campaignId, node_id: c.node_id })); };
      box.appendChild(tile);
    });
    var legend = $("legend");
    legend.textContent = "";
    Object.keys(D.COLOURS).concat(["none"]).forEach(function (colour) {
      legend.appendChild(el("span", { "data-colour": colour, "data-count": String(data.counts[colour]) }, [
        el("i", { class: "c-" + colour }), (colour === "none" ? "无数据" : D.COLOURS[colour]) + " " + data.counts[colour],
      ]));
    });
    $("grid-card").hidden = data.counties.length === 0;
  }

  function children(campaignId, data) {
    var body = $("children").querySelector("tbody");
    body.textContent = "";
    [data.node].concat(data.children).forEach(function (n, i) {
      var self = i === 0;
      body.appendChild(el("tr", { class: self ? "self" : "", "data-node": String(n.node_id) }, [
        el("td", {}, [self ? n.name + "（本级）" : el("a", { href: D.link({ campaign_id: campaignId, node_id: n.node_id }), text: n.name })]),
        el("td", { "data-key": "tasks", text: D.number(n.tasks) }),
        el("td", { "data-key": "completed", text: D.number(n.completed) }),
        el("td", { "data-key": "completion_rate", "data-value": valueAttr(n.completion_rate), text: D.number(n.completion_rate) }),
        el("td", { "data-key": "on_time_rate", "data-value": valueAttr(n.on_time_rate), text: D.number(n.on_time_rate) }),
        el("td", { "data-key": "overdue", text: D.number(n.overdue) }),
        el("td", { "data-key": "positive", text: D.number(n.positive) }),
        el("td", {}, [badge(n.colour)]),
      ]));
    });
    $("children-card").hidden = data.children.length === 0;
  }

  async function trend(campaignId, nodeId, data) {
    var t = await D.api("/campaigns/" + campaignId + "/index/trend", { node_id: nodeId, days: 30 });
    var values = t.points.map(function (p) { return p.value; });
    var box = $("trend");
    box.dataset.values = JSON.stringify(values);
    box.dataset.days = JSON.stringify(t.points.map(function (p) { return p.day; }));
    var echarts = await D.echarts();
    if (!echarts) {
      box.hidden = true;
      $("trend-note").hidden = false;
      $("trend-note").textContent = "图表组件未安装（scripts/vendor-js.sh）。" + t.points.map(function (p) { return p.day + "：" + D.number(p.value); }).join("；");
      return;
    }
    var chart = echarts.init(box);
    chart.setOption({
      grid: { left: 48, right: 48, top: 32, bottom: 32 },
      tooltip: { trigger: "axis" },
      legend: { top: 0, data: [data.campaign.measure_label, "逾期", "已完成"] },
      xAxis: { type: "category", data: t.points.map(function (p) { return p.day.slice(5); }) },
      yAxis: [{ type: "value", name: "%", min: 0, max: 100 }, { type: "value", name: "件", minInterval: 1 }],
      series: [
        // The measure in front of the counts (z); a stored day without it (see index.trend) leaves a gap.
        { name: data.campaign.measure_label, type: "line", z: 10, data: values, connectNulls: false, symbolSize: 8, itemStyle: { color: "#d83931" } },
        { name: "逾期", type: "bar", yAxisIndex: 1, barMaxWidth: 18, data: t.points.map(function (p) { return p.overdue; }), itemStyle: { color: "#f08a00" } },
        { name: "已完成", type: "bar", yAxisIndex: 1, barMaxWidth: 18, data: t.points.map(function (p) { return p.completed; }), itemStyle: { color: "#00a05a" } },
      ],
    });
    window.addEventListener("resize", function () { chart.resize(); });
  }

  async function load() {
    var q = D.query();
    var list, data, map;
    try {
      list = await D.api("/campaigns", { per_page: 200 });
      if (!list.items.length) return D.status("暂无可查看的专项任务", true, true);
      var campaignId = q.campaign_id || list.items[0].id;
      data = await D.api("/campaigns/" + campaignId + "/index", { node_id: q.node_id });
      map = await D.api("/campaigns/" + campaignId + "/index/map", { node_id: data.node.node_id });
    } catch (e) {
      return D.failure(e);
    }
    campaignId = data.campaign.id;
    if (!list.items.some(function (c) { return c.id === campaignId; })) list.items.unshift({ id: campaignId, name: data.campaign.name, owner_name: data.campaign.owner_name, state_label: "" });
    document.title = data.campaign.name + " · 防控指数看板";
    campaigns(list.items, campaignId);
    trail(campaignId, data.trail);
    headline(data);
    grid(campaignId, map);
    children(campaignId, data);
    D.ready();
    await trend(campaignId, data.node.node_id, data).catch(D.failure);
  }

  if (D.signedIn) load();
})();
