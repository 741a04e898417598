/* One indicator at a node (/h5/apps/supervision/indicators/<code>?node_id=&period=): the figure against its
   target, the trend (ECharts line with the target line), the children as a sortable table (tap → that child),
   a colour grid of the counties under the node (one tile per county, coloured by its figure against its target;
   at a county or below, its institutions), and the units that have not reported. */
(function () {
  "use strict";

  var S = window.Sup;
  var cfg = S.cfg, $ = S.$, el = S.el;
  var POINTS = { month: 12, quarter: 8, year: 5 };
  var sort = { key: "", dir: 1 };

  function here(nodeId, period) { return S.link(cfg.indicator + encodeURIComponent(cfg.code), { node_id: nodeId, period: period }); }
  function find(node) {
    for (var i = 0; i < node.indicators.length; i++) if (node.indicators[i].code === cfg.code) return node.indicators[i];
    return null;
  }

  function summary(item) {
    var box = $("summary");
    box.textContent = "";
    box.append(
      el("span", { class: "ind-figure" }, [
        el("b", { class: "value", "data-value": item.value === null ? "" : String(item.value), text: S.number(item.value) }),
        item.value === null ? null : " " + (item.unit || ""),
      ]),
      el("span", { class: "target", text: S.targetText(item) }),
      S.verdictBadge(item),
      el("span", { class: "badge " + S.completenessClass(item), text: "已报 " + item.units_reported + "/" + item.units_expected }),
      el("span", { class: "hint", text: "上期 " + S.number(item.previous) + " · 去年同期 " + S.number(item.last_year) }),
      el("span", { class: "hint", text: S.DIMENSIONS[item.dimension] || item.dimension }),
    );
  }

  function gap(item) {
    // Sorting by verdict: the relative distance to the target, signed so that the worst come first ascending.
    if (item.value === null || item.target === null || item.target === undefined || item.met === null) return Infinity;
    var d = (item.value - item.target) / (Math.abs(item.target) || 1);
    return item.direction === "down" ? -d : d;
  }

  function table(rows, period) {
    var body = $("drill").querySelector("tbody");
    body.textContent = "";
    var self = rows[0], children = rows.slice(1);
    if (sort.key) {
      children = children.slice().sort(function (a, b) {
        var x, y;
        if (sort.key === "name") return sort.dir * a.name.localeCompare(b.name, "zh-CN");
        if (sort.key === "value") { x = a.item.value; y = b.item.value; }
        if (sort.key === "gap") { x = gap(a.item); y = gap(b.item); }
        if (sort.key === "reported") {
          x = a.item.units_expected ? a.item.units_reported / a.item.units_expected : -1;
          y = b.item.units_expected ? b.item.units_reported / b.item.units_expected : -1;
        }
        // No value sorts last either way.
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        return sort.dir * (x - y);
      });
    }
    [self].concat(children).forEach(function (r, i) {
      var item = r.item;
      body.appendChild(el("tr", { class: i === 0 ? "self" : "", "data-node": String(r.node_id) }, [
        el("td", {}, [i === 0 ? r.name + "（本级）" : el("a", { href: here(r.node_id, period), text: r.name })]),
        el("td", { class: "value", "data-value": item.value === null ? "" : String(item.value), text: S.number(item.value) }),
        el("td", { text: item.target === null || item.target === undefined ? "—" : S.number(item.target) }),
        el("td", {}, [S.verdictBadge(item)]),
        el("td", { text: item.units_reported + "/" + item.units_expected }),
      ]));
    });
    document.querySelectorAll("#drill th[data-sort]").forEach(function (th) {
      th.setAttribute("aria-sort", th.dataset.sort === sort.key ? (sort.dir > 0 ? "ascending" : "descending") : "none");
    });
  }

  function tiles(list, period) {
    var box = $("grid");
    box.textContent = "";
    list.forEach(function (r) {
      var v = S.verdict(r.item);
      var tile = el("button", { type: "button", class: "tile " + v, "data-node": String(r.node_id), "data-verdict": v, title: r.name + " " + S.number(r.item.value) }, [
        el("span", { class: "t-name", text: r.name }),
        el("span", { class: "t-value", "data-value": r.item.value === null ? "" : String(r.item.value), text: S.number(r.item.value) }),
      ]);
      tile.onclick = function () { window.location.assign(here(r.node_id, period)); };
      box.appendChild(tile);
    });
    $("grid-card").hidden = list.length === 0;
  }

  function rowsOf(data) {
    var out = [];
    [data.node].concat(data.children).forEach(function (n) {
      var item = find(n);
      if (item) out.push({ node_id: n.node_id, name: n.name, level: n.level, item: item });
    });
    return out;
  }

  async function grid(home, data, period, item) {
    // Counties: under a province, the children of each city (one figures call per city, of this dimension).
    var level = home.node.level;
    if (level === "province_commission") {
      $("grid-title").textContent = "各县（市、区）";
      var cities = data.children.filter(function (c) { return c.level === "city_commission"; });
      var answers = await Promise.all(cities.map(function (c) {
        return S.api("/figures", { node_id: c.node_id, period: period, dimension: item.dimension });
      }));
      var counties = [];
      answers.forEach(function (a) {
        counties = counties.concat(rowsOf(a).slice(1).filter(function (r) { return r.level === "county_bureau"; }));
      });
      // Counties directly under the province (municipalities' districts) too.
      counties = counties.concat(rowsOf(data).slice(1).filter(function (r) { return r.level === "county_bureau"; }));
      return tiles(counties, period);
    }
    if (level === "city_commission") {
      $("grid-title").textContent = "各县（市、区）";
      return tiles(rowsOf(data).slice(1).filter(function (r) { return r.level === "county_bureau"; }), period);
    }
    $("grid-title").textContent = "下级机构";
    tiles(rowsOf(data).slice(1), period);
  }

  async function trend(nodeId, period, item) {
    var kind = S.kindOf(period);
    var data = await S.api("/figures/" + encodeURIComponent(cfg.code) + "/trend", { node_id: nodeId, from: S.before(period, POINTS[kind] - 1), to: period });
    var points = data.series[0].points;
    $("trend").dataset.values = JSON.stringify(points.map(function (p) { return p.value; }));
    var echarts = await S.echarts();
    if (!echarts) {
      $("trend").hidden = true;
      $("trend-note").hidden = false;
      $("trend-note").textContent = "图表组件未安装（scripts/vendor-js.sh）。" + points.map(function (p) { return p.period + "：" + S.number(p.value); }).join("；");
      return;
    }
    var chart = echarts.init($("trend"));
    var hasTarget = points.some(function (p) { return p.target !== null; });
    chart.setOption({
      grid: { left: 48, right: 16, top: 32, bottom: 32 },
      tooltip: { trigger: "axis" },
      legend: { top: 0, data: hasTarget ? ["数值", "目标"] : ["数值"] },
      xAxis: { type: "category", data: data.periods },
      yAxis: { type: "value", name: item.unit || "", scale: true },
      series: [
        { name: "数值", type: "line", data: points.map(function (p) { return p.value; }), connectNulls: false, symbolSize: 6, itemStyle: { color: "#13a8a8" } },
      ].concat(hasTarget ? [{ name: "目标", type: "line", step: "middle", symbol: "none", data: points.map(function (p) { return p.target; }), lineStyle: { type: "dashed", color: "#d83931" }, itemStyle: { color: "#d83931" } }] : []),
    });
    window.addEventListener("resize", function () { chart.resize(); });
  }

  async function load() {
    var q = S.query();
    try {
      var home = await S.api("/dashboard", { node_id: q.node_id });
      var period = q.period || home.periods.month;
      var data = await S.api("/figures", { node_id: home.node.node_id, period: period });
    } catch (e) {
      return S.failure(e);
    }
    var item = find(data.node);
    if (!item) return S.status("该统计期没有指标 " + cfg.code + "（或该指标按其他周期统计、不适用于此单位）", true, true);
    period = data.period;
    $("heading").textContent = item.name;
    document.title = item.name + " · " + home.node.name;
    $("back").href = S.link(cfg.home, { node_id: home.node.node_id, period: period });
    S.trail(home.trail, cfg.indicator + encodeURIComponent(cfg.code), { period: period });
    var kind = S.kindOf(period);
    S.options($("f-period"), S.periods(kind, home.periods[kind], period).map(function (p) { return [p, p]; }), period);
    $("f-period").onchange = function () { window.location.assign(here(home.node.node_id, this.value)); };
    summary(item);
    var rows = rowsOf(data);
    table(rows, period);
    $("drill-card").hidden = rows.length < 2;
    document.querySelectorAll("#drill th[data-sort] button").forEach(function (b) {
      b.onclick = function () {
        var key = b.parentNode.dataset.sort;
        sort = { key: key, dir: sort.key === key ? -sort.dir : 1 };
        table(rows, period);
      };
    });
    S.ready();
    var missing = S.missing($("missing"), cfg.code, home.node.node_id, period, 1, $("missing-pager")).then(function (m) {
      $("missing-count").textContent = String(m.total);
      $("missing-empty").hidden = m.total > 0;
    });
    await Promise.all([grid(home, data, period, item), trend(home.node.node_id, period, item), missing]).catch(S.failure);
  }

  if (S.signedIn) load();
})();
