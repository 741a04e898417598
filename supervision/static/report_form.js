/* 指标填报 (/h5/apps/supervision/reports/new): a member of an institution or a county bureau reports the manual and
   mixed indicators of their unit's reporting level for one period, grouped by dimension with the numerator and
   denominator definitions as hints; qualitative ones take 达标/未达标 and the assessor's words. Submitting asks the
   unit's administrators to approve (POST /api/supervision/reports) and opens the pending report, where evidence is
   uploaded. The API checks every item; its errors (`items.N.field`) go next to the inputs of item N. */
(function () {
  "use strict";

  var S = window.Sup;
  var cfg = S.cfg, $ = S.$, el = S.el;
  var dom = window.WorkbenchDom;
  var session = window.WorkbenchSession;

  var units = [], indicators = [];

  // The current period of a kind (Beijing time is the phone's time in practice; the server decides anyway).
  function current(kind) {
    var d = new Date(), y = d.getFullYear(), m = d.getMonth() + 1;
    if (kind === "year") return String(y);
    if (kind === "quarter") return y + "-Q" + Math.ceil(m / 3);
    return y + "-" + (m < 10 ? "0" : "") + m;
  }

  // The report's own fetch: the API names every item's problem in `error.errors`, which the shell's
  // ApiFailure does not keep.
  async function post(path, body) {
    async function once() {
      var t = session.tokens();
      var reply;
      try {
        reply = await fetch(cfg.api + path, {
          method: "POST", credentials: "same-origin", body: JSON.stringify(body),
          headers: { Accept: "application/json", "Content-Type": "application/json", Authorization: "Bearer " + (t && t.access_token) },
        });
      } catch (e) {
        throw new session.ApiFailure(0, "network", "网络异常，请检查网络后重试");
      }
      var data = null;
      try { data = await reply.json(); } catch (e) { /* not JSON */ }
      if (reply.ok) return data;
      var err = (data && data.error) || {};
      var failure = new session.ApiFailure(reply.status, err.code || "http_" + reply.status, err.message || "提交失败（" + reply.status + "）", err.field, err.details);
      failure.errors = err.errors || null;
      failure.report_id = err.report_id || null;
      throw failure;
    }
    try {
      return await once();
    } catch (e) {
      if (e.status !== 401) throw e;
      if (e.code !== "token_expired") return dom.signIn(cfg.shell);
      await session.api("GET", "/api/me"); // refreshes the token once
      return once();
    }
  }

  function query() {
    var q = new URLSearchParams(window.location.search);
    return { unit_id: q.get("unit_id") || "", period: q.get("period") || "" };
  }

  function unitLevel() {
    var id = Number($("unit_id").value);
    var unit = units.find(function (u) { return u.id === id; });
    return unit ? unit.level : null;
  }

  function forUnit() {
    var level = unitLevel();
    return indicators.filter(function (i) {
      return (cfg.reporting_units[i.reporting_level] || []).indexOf(level) >= 0;
    });
  }

  function fillKinds(wanted) {
    var have = {};
    forUnit().forEach(function (i) { have[i.period] = true; });
    var kinds = cfg.kinds.filter(function (k) { return have[k[0]]; });
    S.options($("kind"), kinds);
    if (wanted && have[wanted]) $("kind").value = wanted;
  }

  function fillPeriods(wanted) {
    var kind = $("kind").value;
    if (!kind) { S.options($("period"), []); return; }
    var now = current(kind), latest = S.before(now, 1);
    var codes = [now].concat(S.periods(kind, latest, wanted));
    S.options($("period"), codes.map(function (p) { return [p, p + (p === now ? "（本期）" : "")]; }), latest);
    if (wanted && codes.indexOf(wanted) >= 0) $("period").value = wanted;
  }

  function slot(name) { return el("p", { class: "field-error", "data-error-for": name }); }

  function field(label, input, name, hint) {
    return el("div", { class: "field" }, [el("label", { for: input.id, text: label }), input, hint ? el("p", { class: "hint", text: hint }) : null, slot(name)]);
  }

  function item(i) {
    var base = "items." + i.code, id = "i-" + i.code;
    var children = [
      el("legend", {}, [i.name, el("small", { text: i.code + " · " + (i.kind_name || "") + (i.unit ? " · " + i.unit : "") })]),
    ];
    var defs = [el("p", { text: (i.kind === "qualitative" ? "评估内容：" : "分子：") + i.numerator_definition })];
    if (i.denominator_definition && i.kind !== "qualitative") defs.push(el("p", { text: "分母：" + i.denominator_definition }));
    children.push(el("div", { class: "defs" }, defs));
    if (i.kind === "qualitative") {
      var verdict = el("select", { id: id + "-n", name: base + ".numerator" });
      [["", "请选择"], ["1", "达标"], ["0", "未达标"]].forEach(function (p) { verdict.appendChild(el("option", { value: p[0], text: p[1] })); });
      var words = el("textarea", { id: id + "-v", name: base + ".verdict", rows: "2", maxlength: "500", placeholder: "评估人结论" });
      children.push(field("评估结论", verdict, base + ".numerator"));
      children.push(field("评估人意见", words, base + ".verdict", "提交后须上传佐证材料"));
    } else {
      var number = function (suffix, label) {
        return field(label, el("input", { id: id + "-" + suffix[0], name: base + "." + suffix, inputmode: "decimal", autocomplete: "off" }), base + "." + suffix);
      };
      var pair = [number("numerator", i.kind === "count" ? "数值（" + i.unit + "）" : "分子")];
      if (i.kind !== "count") pair.push(number("denominator", "分母"));
      children.push(el("div", { class: "pair" + (pair.length === 1 ? " one" : "") }, pair));
    }
    children.push(slot(base));
    return el("fieldset", { class: "ritem", "data-code": i.code, "data-kind": i.kind }, children);
  }

  function render() {
    var kind = $("kind").value;
    var shown = forUnit().filter(function (i) { return i.period === kind; });
    var by = {};
    shown.forEach(function (i) { (by[i.dimension] = by[i.dimension] || []).push(i); });
    var box = $("groups");
    box.textContent = "";
    cfg.dimensions.forEach(function (d) {
      if (!by[d[0]]) return;
      box.appendChild(el("section", { class: "card dim", "data-dimension": d[0] }, [el("h2", { text: d[1] })].concat(by[d[0]].map(item))));
    });
    $("none").hidden = shown.length > 0;
    $("submit").disabled = shown.length === 0;
    $("evidence-hint").hidden = !shown.some(function (i) { return i.kind === "qualitative"; });
  }

  // A typed number goes as a JSON number; anything else as typed, so the API names the field.
  function amount(raw) {
    var text = raw.trim();
    if (text === "") return undefined;
    return /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : text;
  }

  function collect() {
    var items = [];
    document.querySelectorAll("#groups fieldset.ritem").forEach(function (box) {
      var code = box.dataset.code, base = "items." + code;
      var get = function (suffix) { var input = box.querySelector('[name="' + base + "." + suffix + '"]'); return input ? input.value : ""; };
      var n = get("numerator"), d = get("denominator"), v = get("verdict");
      if (!n.trim() && !d.trim() && !v.trim()) return;
      var out = { indicator: code };
      if (amount(n) !== undefined) out.numerator = amount(n);
      if (box.dataset.kind === "qualitative") {
        out.denominator = 1; // a verdict is 1 (达标) or 0 over 1
        if (v.trim()) out.verdict = v.trim();
      } else if (amount(d) !== undefined) {
        out.denominator = amount(d);
      }
      items.push(out);
    });
    return items;
  }

  // `items.N.field` → `items.CODE.field`: the request's index is the Nth filled indicator, the form's slots are by code.
  function byCode(name, codes) {
    var m = /^items\.(\d+)(?:\.(.*))?$/.exec(name || "");
    if (!m || codes[Number(m[1])] === undefined) return name;
    return "items." + codes[Number(m[1])] + (m[2] ? "." + m[2] : "");
  }

  function showFailure(form, e, codes) {
    var details = {};
    (e.errors || []).forEach(function (x) {
      var name = byCode(x.field, codes); // the full dotted name: "items.1.numerator", "period"
      if (!(name in details)) details[name] = x.message;
    });
    var shown = Object.keys(details).length
      ? { message: e.message, details: details, field: null }
      : { message: e.message, details: null, field: byCode(e.field, codes) };
    dom.showErrors(form, shown);
    S.notice(e.message);
    if (e.report_id) {
      var link = el("a", { href: cfg.report + e.report_id, text: "查看审批中的填报" });
      $("notice").append(" ", link);
    }
  }

  async function submit(event) {
    event.preventDefault();
    var form = $("report-form");
    dom.clearErrors(form);
    S.notice("");
    var items = collect();
    if (!items.length) {
      dom.showErrors(form, { message: "请至少填写一项指标", field: "items" });
      return;
    }
    var body = { unit_id: Number($("unit_id").value), period: $("period").value, items: items };
    var note = $("note").value.trim();
    if (note) body.note = note;
    $("submit").disabled = true;
    try {
      var report = await post("/reports", body);
      window.location.assign(cfg.report + report.id + "?created=1");
    } catch (e) {
      showFailure(form, e, items.map(function (i) { return i.indicator; }));
      $("submit").disabled = false;
    }
  }

  async function load() {
    var q = query();
    try {
      var me = await session.api("GET", "/api/me");
      var lists = await Promise.all(["manual", "mixed"].map(function (c) { return S.api("/indicators", { collection: c, active: true }); }));
    } catch (e) {
      if (e.status === 401) return dom.signIn(cfg.shell);
      return S.failure(e);
    }
    var seen = {};
    (me.positions || []).forEach(function (p) {
      if (p.unit_id && cfg.unit_levels.indexOf(p.unit_level) >= 0 && !seen[p.unit_id]) {
        seen[p.unit_id] = true;
        units.push({ id: p.unit_id, name: p.unit_name, level: p.unit_level });
      }
    });
    if (!units.length) return S.status("您不在任何医疗卫生机构或区县卫健局，无需填报指标", true, true);
    indicators = lists[0].items.concat(lists[1].items);
    S.options($("unit_id"), units.map(function (u) { return [u.id, u.name]; }));
    if (seen[q.unit_id]) $("unit_id").value = q.unit_id;
    fillKinds(S.kindOf(q.period));
    fillPeriods(q.period);
    render();
    $("unit_id").onchange = function () { fillKinds($("kind").value); fillPeriods(); render(); };
    $("kind").onchange = function () { fillPeriods(); render(); };
    $("report-form").onsubmit = submit;
    S.ready();
  }

  if (S.signedIn) load();
})();
