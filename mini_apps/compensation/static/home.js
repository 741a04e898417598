/* 补偿结算 (/h5/apps/compensation/?county_id=&kind=&period=). A county bureau's administrators and finance officers
   (and commission administrators, who pick the county) get the county finance view: 月度预拨 or 年度清算 and the
   period, every institution of the county with its settlement of that period (the newest revision: state,
   revision, 当量 per package, coefficient, purchase amount, line items, fee income and gap subsidy in the gap
   variant, advances already paid for the true-up, payable) and the totals, 生成结算 while nothing of the period is
   open or approved, 提交审批 while drafts exist, and 导出 Excel. The API's 422 goes next to the field it names, a
   409 (its Chinese message) above the table. An institution's administrator gets every revision of their
   institution's settlements with state, who, when and the refusal reason. Figures are the API's strings; totals
   are their exact sums. */
(function () {
  "use strict";

  var C = window.Comp;
  var cfg = C.cfg, $ = C.$, el = C.el;
  var view = null; // {county, kind, period, rows, settlements}
  var counties = [];

  function query() {
    var q = new URLSearchParams(window.location.search);
    return { county_id: q.get("county_id") || "", kind: q.get("kind") || "", period: q.get("period") || "" };
  }

  function pad(n) { return n < 10 ? "0" + n : "" + n; }
  function defaultPeriod(kind) {
    // The month or the year just ended: what is settled now.
    var d = new Date();
    if (kind === "annual") return String(d.getFullYear() - 1);
    d.setDate(1);
    d.setMonth(d.getMonth() - 1);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1);
  }

  function periodInput(kind) {
    // A month picker for the advance; the year as typed for the true-up (the API checks it).
    var input = $("f-period");
    if (kind === "annual") {
      input.type = "text";
      input.setAttribute("inputmode", "numeric");
      input.setAttribute("placeholder", "YYYY");
      input.setAttribute("maxlength", "7");
    } else {
      input.type = "month";
      input.removeAttribute("inputmode");
      input.removeAttribute("placeholder");
      input.removeAttribute("maxlength");
    }
  }

  // -- the county finance view ---------------------------------------------------------------------------------

  function latest(items) {
    // The newest revision per institution (an older one was refused and superseded).
    var by = {};
    items.forEach(function (s) {
      if (!by[s.institution_id] || by[s.institution_id].revision < s.revision) by[s.institution_id] = s;
    });
    return by;
  }

  function columns(settled, kind) {
    var gap = settled.some(function (s) { return s.fee_income !== null && s.fee_income !== undefined; });
    var cols = [
      { key: "name", label: "机构", cls: "name" },
      { key: "state", label: "状态" },
      { key: "revision", label: "版本", cls: "num" },
    ];
    cfg.packages.forEach(function (p) {
      cols.push({ key: "te." + p[0], label: p[1] + "当量", cls: "num", places: 4, get: function (s) { return (s.equivalents || {})[p[0]]; } });
    });
    cols.push({ key: "coefficient", label: "绩效系数", cls: "num" });
    cols.push({ key: "purchase_amount", label: "购买金额", cls: "num", places: 2 });
    cols.push({ key: "line_item_amount", label: "专项补助", cls: "num", places: 2 });
    if (gap) {
      cols.push({ key: "fee_income", label: "医疗服务收入", cls: "num", places: 2 });
      cols.push({ key: "gap_subsidy", label: "差额补助", cls: "num", places: 2 });
    }
    if (kind === "annual") cols.push({ key: "advances_paid", label: "已拨预拨", cls: "num", places: 2 });
    cols.push({ key: "payable", label: "应拨付", cls: "num", places: 2 });
    return cols;
  }

  function value(col, s) { return col.get ? col.get(s) : s[col.key]; }

  function cell(col, inst, s) {
    var attrs = { "data-key": col.key, "data-label": col.label, class: col.cls || "" };
    if (col.key === "name") {
      return el("td", attrs, [s ? el("a", { href: C.settlementUrl(s.id), text: inst.name }) : inst.name]);
    }
    if (col.key === "state") {
      return el("td", attrs, [
        s ? C.stateBadge(s.state, s.state_label) : C.stateBadge(null),
        s && s.reason ? el("span", { class: "how reason", text: s.reason }) : null,
      ]);
    }
    if (!s) return el("td", attrs);
    var v = value(col, s);
    attrs["data-value"] = v === null || v === undefined ? "" : String(v);
    var text = v === null || v === undefined ? "—" : col.key === "revision" ? String(v) : C.grouped(v);
    return el("td", attrs, [text]);
  }

  function renderCounty() {
    var cols = columns(view.settled, view.kind);
    var head = $("settlements-head");
    head.textContent = "";
    cols.forEach(function (c) { head.appendChild(el("th", { class: c.cls || "", text: c.label })); });
    var body = $("settlements").querySelector("tbody");
    body.textContent = "";
    view.rows.forEach(function (r) {
      body.appendChild(el("tr", { "data-institution": String(r.inst.id), "data-id": r.s ? String(r.s.id) : "" },
        cols.map(function (c) { return cell(c, r.inst, r.s); })));
    });
    var foot = $("settlements").querySelector("tfoot");
    foot.textContent = "";
    if (view.settled.length) {
      foot.appendChild(el("tr", { id: "totals" }, cols.map(function (c) {
        var attrs = { "data-key": c.key, "data-label": c.label, class: c.cls || "" };
        if (c.key === "name") return el("td", attrs, ["合计（" + view.settled.length + " 家）"]);
        if (c.places === undefined) return el("td", attrs);
        var total = C.sum(view.settled.map(function (s) { return value(c, s); }), c.places);
        attrs["data-value"] = total;
        return el("td", attrs, [C.grouped(total)]);
      })));
    }
    $("county-title").textContent = view.county.name + " · " + C.KINDS[view.kind] + " · " + view.period;
    var counts = {};
    view.settled.forEach(function (s) { counts[s.state_label] = (counts[s.state_label] || 0) + 1; });
    $("county-hint").textContent = "共 " + view.rows.length + " 家机构，已结算 " + view.settled.length + " 家" +
      Object.keys(counts).map(function (k) { return "，" + k + " " + counts[k]; }).join("") +
      (view.settled.length < view.rows.length ? "（没有当期工作量的机构不结算）" : "");
    $("county-empty").hidden = view.rows.length > 0;

    var states = view.settled.map(function (s) { return s.state; });
    var blocked = states.some(function (st) { return st === "approved" || cfg.openStates.indexOf(st) >= 0; });
    $("settle").hidden = !view.county.writer || blocked;
    $("submit").hidden = !view.county.writer || states.indexOf("draft") < 0;
    var exp = $("export");
    exp.hidden = !view.settled.length;
    C.exportLink(exp, C.withQuery(cfg.api + "/counties/" + view.county.id + "/settlements/export.xlsx",
      { kind: view.kind, period: view.period }), view.county.name + "_" + view.period + "_结算.xlsx");
  }

  async function institutionsOf(countyId) {
    var out = [], page = 1;
    for (;;) {
      var reply = await C.api("GET", C.withQuery("/institution-tiers", { node_id: countyId, page: page, per_page: 1000 }));
      out = out.concat(reply.items || []);
      if (!reply.items || !reply.items.length || out.length >= (reply.total || 0)) return out;
      page += 1;
    }
  }

  async function loadCounty() {
    var county = view.county;
    var got;
    try {
      got = await Promise.all([
        institutionsOf(county.id),
        C.api("GET", C.withQuery("/counties/" + county.id + "/settlements", { kind: view.kind, period: view.period })),
      ]);
    } catch (e) {
      // A period that is not one: said at the field, as the POSTs would say it.
      if (e.status === 422) { C.showErrors($("period-form"), e); return C.ready(); }
      return C.failure(e);
    }
    var by = latest(got[1].items || []);
    var rows = got[0].map(function (t) {
      var s = by[t.institution_id] || null;
      delete by[t.institution_id];
      return { inst: { id: t.institution_id, name: t.institution_name }, s: s };
    });
    // Settled institutions no longer listed (merged or removed since): still shown, with their figures.
    Object.keys(by).forEach(function (k) { rows.push({ inst: { id: by[k].institution_id, name: by[k].institution_name || "#" + k }, s: by[k] }); });
    view.rows = rows;
    view.settled = rows.filter(function (r) { return r.s; }).map(function (r) { return r.s; });
    renderCounty();
    C.ready();
  }

  function readForm() {
    C.notice(""); // what was said was about the view before
    view.kind = $("f-kind").value;
    view.period = $("f-period").value.trim();
    var params = { county_id: view.county.id, kind: view.kind, period: view.period };
    window.history.replaceState(null, "", C.homeUrl(params));
  }

  async function act(button, path, done) {
    var form = $("period-form");
    C.clearErrors(form);
    button.disabled = true;
    try {
      var reply = await C.api("POST", "/counties/" + view.county.id + path, { kind: view.kind, period: view.period });
      C.notice(done(reply), true);
    } catch (e) {
      if (e.status === 422) C.showErrors(form, e);
      else C.notice(e.message);
    } finally {
      button.disabled = false;
    }
    await loadCounty();
  }

  function countyView(q) {
    var county = counties.find(function (c) { return String(c.id) === q.county_id; }) || counties[0];
    var kind = C.KINDS[q.kind] ? q.kind : "advance";
    view = { county: county, kind: kind, period: q.period || defaultPeriod(kind), rows: [], settled: [] };
    $("county-view").hidden = false;
    $("county-field").hidden = counties.length < 2;
    C.options($("f-county"), counties.map(function (c) { return [c.id, c.name]; }));
    $("f-county").value = String(county.id);
    C.options($("f-kind"), cfg.kinds);
    $("f-kind").value = kind;
    periodInput(kind);
    $("f-period").value = view.period;
    window.history.replaceState(null, "", C.homeUrl({ county_id: county.id, kind: kind, period: view.period }));
    document.title = county.name + " · 补偿结算";

    $("f-county").onchange = function () {
      view.county = counties.find(function (c) { return String(c.id) === $("f-county").value; });
      document.title = view.county.name + " · 补偿结算";
      C.clearErrors($("period-form"));
      readForm();
      loadCounty();
    };
    $("f-kind").onchange = function () {
      var k = $("f-kind").value;
      periodInput(k);
      $("f-period").value = defaultPeriod(k);
      C.clearErrors($("period-form"));
      readForm();
      loadCounty();
    };
    $("f-period").onchange = function () { C.clearErrors($("period-form")); readForm(); loadCounty(); };
    $("period-form").onsubmit = function (ev) { ev.preventDefault(); readForm(); loadCounty(); };
    $("settle").onclick = function () {
      readForm();
      act(this, "/settlements", function (r) { return "已生成 " + r.items.length + " 家机构的结算草稿"; });
    };
    $("submit").onclick = function () {
      readForm();
      act(this, "/settlements/submit", function (r) {
        return "已提交审批：" + r.items.length + " 家机构，审批人 " + (r.approvers || []).length + " 人";
      });
    };
    return loadCounty();
  }

  // -- an institution's view -----------------------------------------------------------------------------------

  function institutionTable(inst, items) {
    var cols = [
      ["kind", "类型"], ["period", "期间"], ["revision", "版本"], ["state", "状态"], ["payable", "应拨付"],
      ["created", "生成"], ["submitted", "提交审批"], ["decided", "审批"], ["reason", "退回原因"],
    ];
    var head = el("tr", {}, cols.map(function (c) { return el("th", { class: c[0] === "payable" || c[0] === "revision" ? "num" : "", text: c[1] }); }));
    var rows = items.map(function (s) {
      function td(key, label, content, cls) { return el("td", { "data-key": key, "data-label": label, class: cls || "" }, [content]); }
      return el("tr", { "data-id": String(s.id), "data-state": s.state }, [
        td("kind", "类型", C.KINDS[s.kind] || s.kind, "name"),
        td("period", "期间", el("a", { href: C.settlementUrl(s.id), text: s.period })),
        td("revision", "版本", String(s.revision), "num"),
        td("state", "状态", C.stateBadge(s.state, s.state_label)),
        el("td", { "data-key": "payable", "data-label": "应拨付", "data-value": s.payable, class: "num" }, [C.money(s.payable)]),
        td("created", "生成", C.who(s.created_by_name || s.created_by, s.created_at)),
        td("submitted", "提交审批", C.when(s.submitted_at)),
        td("decided", "审批", C.who(s.decided_by_name || s.decided_by, s.decided_at)),
        td("reason", "退回原因", s.reason || "", "reason"),
      ]);
    });
    return el("div", { class: "institution", "data-institution": String(inst.id) }, [
      el("h3", { text: inst.name }),
      el("div", { class: "table-wrap" }, [el("table", { class: "grid" }, [el("thead", {}, [head]), el("tbody", {}, rows)])]),
    ]);
  }

  async function institutionView(institutions) {
    var byCounty = {};
    institutions.forEach(function (i) { (byCounty[i.county_id] = byCounty[i.county_id] || []).push(i); });
    var lists;
    try {
      lists = await Promise.all(Object.keys(byCounty).map(function (id) { return C.api("GET", "/counties/" + id + "/settlements"); }));
    } catch (e) {
      return C.failure(e);
    }
    var all = [];
    lists.forEach(function (l) { all = all.concat(l.items || []); });
    // Newest period first; within a period the newest revision first.
    all.sort(function (a, b) {
      return a.period === b.period ? (a.kind === b.kind ? b.revision - a.revision : a.kind < b.kind ? -1 : 1) : a.period < b.period ? 1 : -1;
    });
    var box = $("institutions");
    box.textContent = "";
    institutions.forEach(function (inst) {
      var mine = all.filter(function (s) { return s.institution_id === inst.id; });
      if (mine.length) box.appendChild(institutionTable(inst, mine));
    });
    $("institution-empty").hidden = box.children.length > 0;
    $("institution-view").hidden = false;
    document.title = institutions.map(function (i) { return i.name; }).join("、") + " · 补偿结算";
    C.ready();
  }

  async function start() {
    var where;
    try {
      where = await C.places();
    } catch (e) {
      return C.failure(e);
    }
    counties = where.counties;
    if (counties.length) return countyView(query());
    if (where.institutions.length) return institutionView(where.institutions);
    return C.status("您没有权限查看", true, true); // what a 403 from the API shows on the other apps' pages
  }

  if (C.signedIn) start();
})();
