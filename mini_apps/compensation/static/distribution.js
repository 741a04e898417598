/* 内部分配 (二次分配) of one settlement (/h5/apps/compensation/settlements/<id>/distribution?distribution=<id>).
   The institution's current rule — 绩效池比例, 平均分配比例, 默认个人系数, 系数上下限, per-person coefficients (member
   id; the institution's staff offered by name), 封顶倍数, the packages counted — editable by the institution's
   administrators (the API's 422 next to the field it names, `coefficients.2.coefficient` included) and read-only
   for the county's readers; 生成分配方案 for an approved settlement; the distribution shown (the confirmed one, else
   the newest revision, or the one asked for): its figures with the API's computation, each person's 个人当量, 系数,
   点数, 金额 and 封顶 (with the API's `how` for that person), the exact totals (Σ amounts = the pool, to the
   cent); 确认 for a draft; every revision of the settlement's distribution. A 409 (its Chinese message) goes
   above. Figures are the API's strings. */
(function () {
  "use strict";

  var C = window.Comp;
  var cfg = C.cfg, $ = C.$, el = C.el;
  var settlement = null;
  var manager = false;
  var rules = null; // {current, versions}
  var revisions = []; // this settlement's distributions, newest first
  var shown = null; // the distribution on the page (detail)
  var known = {}; // member id → name: the institution's staff, and anyone in the shares
  var staff = []; // the institution's staff (the API's), for the member picker
  var filled = null; // the rule version the form shows (0: none yet): refilled only when another is current

  function wanted() {
    var id = new URLSearchParams(window.location.search).get("distribution");
    return id ? Number(id) : null;
  }

  // -- the settlement ------------------------------------------------------------------------------------------

  function pair(dl, label, content, key) {
    if (content === null || content === undefined || content === "") return;
    dl.append(el("dt", { text: label }), el("dd", { "data-field": key }, [content]));
  }

  function details(s) {
    $("title").textContent = (s.institution_name || "") + " · " + (C.KINDS[s.kind] || s.kind) + " " + s.period;
    $("settlement-state").replaceChildren(C.stateBadge(s.state, s.state_label));
    document.title = (s.institution_name || "") + " " + s.period + " · 内部分配";
    var dl = $("details");
    dl.textContent = "";
    pair(dl, "结算", el("a", { href: C.settlementUrl(s.id), text: "第 " + s.revision + " 版 · 应拨付 " + C.money(s.payable) + " 元" }), "settlement");
    pair(dl, "专项补助", C.money(s.line_item_amount) + " 元（专款专用，不参与分配）", "line_item_amount");
    $("back").href = C.settlementUrl(s.id);
    $("readonly-hint").hidden = manager;
  }

  // -- the rule ------------------------------------------------------------------------------------------------

  var FIELDS = ["pool_share", "average_share", "default_coefficient", "coefficient_min", "coefficient_max", "cap_multiple", "note"];

  function memberName(id) { return known[String(id)] || ""; }

  function renumber() {
    // The API names a coefficient by its position (`coefficients.N.…`): inputs and error slots follow the rows.
    $("coefficients").querySelectorAll("tbody tr").forEach(function (tr, n) {
      tr.dataset.index = String(n);
      tr.querySelectorAll("[data-part]").forEach(function (node) {
        var name = "coefficients." + n + "." + node.dataset.part;
        if (node.hasAttribute("data-error-for")) node.setAttribute("data-error-for", name);
        else node.setAttribute("name", name);
      });
    });
  }

  function coefficientRow(entry) {
    var member = el("input", { "data-part": "member_id", inputmode: "numeric", list: "known-members", autocomplete: "off", "aria-label": "人员 ID" });
    member.value = entry.member_id === undefined || entry.member_id === null ? "" : String(entry.member_id);
    var name = el("span", { class: "member-name", text: memberName(member.value) });
    member.oninput = function () { name.textContent = memberName(member.value.trim()); };
    var coefficient = el("input", { "data-part": "coefficient", inputmode: "decimal", autocomplete: "off", "aria-label": "个人系数" });
    coefficient.value = entry.coefficient || "";
    var note = el("input", { "data-part": "note", maxlength: "100", autocomplete: "off", "aria-label": "说明" });
    note.value = entry.note || "";
    var remove = el("button", { type: "button", class: "link remove", text: "移除" });
    var tr = el("tr", {}, [
      el("td", { class: "name", "data-key": "member_id", "data-label": "人员 ID" }, [member, el("p", { class: "field-error", "data-part": "member_id", "data-error-for": "" })]),
      el("td", { "data-key": "member_name", "data-label": "姓名" }, [name]),
      el("td", { class: "num", "data-key": "coefficient", "data-label": "个人系数" }, [coefficient, el("p", { class: "field-error", "data-part": "coefficient", "data-error-for": "" })]),
      el("td", { "data-key": "note", "data-label": "说明" }, [note, el("p", { class: "field-error", "data-part": "note", "data-error-for": "" })]),
      el("td", { "data-key": "remove" }, [remove]),
    ]);
    remove.onclick = function () { tr.remove(); renumber(); };
    return tr;
  }

  function fillRule() {
    var form = $("rule-form");
    var r = rules.current || {};
    FIELDS.forEach(function (k) {
      var v = r[k];
      form.elements[k].value = v === null || v === undefined ? "" : String(v);
    });
    if (!rules.current) {
      // A first rule: the API's defaults where it has them.
      form.elements.average_share.value = "0";
      form.elements.default_coefficient.value = "1";
    }
    var box = $("packages");
    box.textContent = "";
    var chosen = r.packages || cfg.packages.map(function (p) { return p[0]; });
    cfg.packages.forEach(function (p) {
      var box1 = el("input", { type: "checkbox", name: "package", value: p[0], id: "f-package-" + p[0] });
      box1.checked = chosen.indexOf(p[0]) >= 0;
      box.appendChild(el("label", { for: "f-package-" + p[0] }, [box1, p[1]]));
    });
    var body = $("coefficients").querySelector("tbody");
    body.textContent = "";
    (r.coefficients || []).forEach(function (c) { body.appendChild(coefficientRow(c)); });
    renumber();
    $("rule-version").textContent = rules.current
      ? "第 " + rules.current.version + " 版 · " + C.who(rules.current.set_by_name || rules.current.set_by, rules.current.set_at)
      : "尚未设置";
    // Read-only for whoever does not administer the institution.
    form.querySelectorAll("input,textarea").forEach(function (i) { i.disabled = !manager; });
    $("rule-actions").hidden = !manager;
    $("add-coefficient").hidden = !manager;
    form.querySelectorAll("button.remove").forEach(function (b) { b.hidden = !manager; });
    C.clearErrors(form);
  }

  function knownMembers() {
    var list = $("known-members");
    list.textContent = "";
    Object.keys(known).forEach(function (id) { list.appendChild(el("option", { value: id, label: known[id] })); });
  }

  function ruleBody() {
    var form = $("rule-form");
    function v(name) { return form.elements[name].value.trim(); }
    var coefficients = [];
    $("coefficients").querySelectorAll("tbody tr").forEach(function (tr) {
      function part(p) { return tr.querySelector('input[data-part="' + p + '"]').value.trim(); }
      var id = part("member_id");
      coefficients.push({
        // A whole number is the member's id; anything else goes as typed and the API names it.
        member_id: /^\d+$/.test(id) ? Number(id) : id,
        coefficient: part("coefficient"),
        note: part("note") || null,
      });
    });
    var packages = [];
    form.querySelectorAll('input[name="package"]').forEach(function (b) { if (b.checked) packages.push(b.value); });
    return {
      // Numbers go as typed: the API refuses, naming the field, what is not a number or has too many places.
      pool_share: v("pool_share"),
      average_share: v("average_share"),
      default_coefficient: v("default_coefficient"),
      coefficient_min: v("coefficient_min"),
      coefficient_max: v("coefficient_max"),
      cap_multiple: v("cap_multiple") || null,
      packages: packages,
      coefficients: coefficients,
      note: v("note") || null,
    };
  }

  async function saveRule(ev) {
    ev.preventDefault();
    var form = $("rule-form");
    C.clearErrors(form);
    C.notice("");
    $("save-rule").disabled = true;
    try {
      var saved = await C.api("PUT", "/institutions/" + settlement.institution_id + "/distribution-rules", ruleBody());
      C.notice("已保存分配规则（第 " + saved.version + " 版），生成分配方案时使用", true);
    } catch (e) {
      if (e.status === 422) return C.showErrors(form, e);
      return C.notice(e.message);
    } finally {
      $("save-rule").disabled = false;
    }
    await refresh(shown && shown.id);
  }

  // -- the distribution ----------------------------------------------------------------------------------------

  function figure(key, label, value, how, main) {
    return el("li", { "data-key": key, class: main ? "main" : "" }, [
      el("span", { class: "k", text: label }),
      el("span", { class: "v", "data-value": value === null || value === undefined ? "" : String(value), text: C.grouped(value) }),
      how ? el("span", { class: "how", text: how }) : null,
    ]);
  }

  function cell(key, label, value, cls) {
    return el("td", { class: cls || "num", "data-key": key, "data-label": label, "data-value": value }, [C.grouped(value)]);
  }

  function renderDistribution(d) {
    $("distribution").hidden = !d;
    $("distribution-state").replaceChildren(d ? C.stateBadge(d.state, d.state_label) : "");
    $("distribution-title").textContent = d
      ? "第 " + d.revision + " 版 · " + C.who(d.created_by_name || d.created_by, d.created_at) +
        (d.confirmed_at ? " · 确认 " + C.who(d.confirmed_by_name || d.confirmed_by, d.confirmed_at) : "")
      : "";
    if (!d) return;
    var how = d.computation || {};
    var list = $("figures");
    list.textContent = "";
    list.append(
      figure("basis", "服务部分（元）", d.basis, how.basis),
      figure("pool", "绩效池（元）", d.pool, how.pool, true),
      figure("average_amount", "每人平均部分（元）", d.average_amount, how.average),
      figure("total_points", "总点数", d.total_points, how.points),
      figure("point_value", "点值（元/点）", d.point_value, how.amount)
    );
    var body = $("shares").querySelector("tbody");
    body.textContent = "";
    d.shares.forEach(function (sh) {
      body.appendChild(el("tr", { "data-member": String(sh.member_id), class: sh.capped ? "capped" : "" }, [
        el("td", { class: "name", "data-key": "name" }, [
          (sh.name || "#" + sh.member_id) + "（ID " + sh.member_id + "）",
          sh.how ? el("span", { class: "how", "data-key": "how", text: sh.how }) : null,
        ]),
        cell("equivalents", "个人当量", sh.equivalents),
        cell("coefficient", "系数", sh.coefficient),
        cell("points", "点数", sh.points),
        cell("amount", "金额（元）", sh.amount),
        el("td", { "data-key": "capped", "data-label": "封顶", "data-value": sh.capped ? "1" : "" }, [sh.capped ? "已封顶" : ""]),
      ]));
    });
    var foot = $("shares").querySelector("tfoot");
    foot.textContent = "";
    function total(key, places) { return C.sum(d.shares.map(function (sh) { return sh[key]; }), places); }
    var amounts = total("amount", 2);
    foot.appendChild(el("tr", { id: "share-totals" }, [
      el("td", { class: "name", "data-key": "name" }, ["合计（" + d.shares.length + " 人）"]),
      cell("equivalents", "个人当量", total("equivalents", 4)),
      el("td", { "data-key": "coefficient" }),
      cell("points", "点数", total("points", 4)),
      cell("amount", "金额（元）", amounts),
      el("td", { "data-key": "capped" }),
    ]));
    var unsettled = ((d.snapshot || {}).unsettled || []).length;
    $("unsettled").hidden = !unsettled;
    $("unsettled").textContent = unsettled
      ? unsettled + " 条个人工作量的项目或月份未在该结算中计价，不计入个人当量"
      : "";
    // Σ amounts is the pool to the cent (the API hands the leftover cents out): said, and checked here.
    var hint = amounts === d.pool
      ? "个人金额合计 " + C.grouped(amounts) + " 元 = 绩效池 " + C.grouped(d.pool) + " 元"
      : "个人金额合计 " + C.grouped(amounts) + " 元与绩效池 " + C.grouped(d.pool) + " 元不符，请联系管理员";
    $("distribution-hint").textContent = hint;
    $("distribution-hint").className = amounts === d.pool ? "hint" : "hint reason";
  }

  function renderRevisions() {
    var body = $("revisions").querySelector("tbody");
    body.textContent = "";
    revisions.forEach(function (r) {
      var current = shown && r.id === shown.id;
      var label = "第 " + r.revision + " 版";
      var open = el("button", { type: "button", class: "link", text: label });
      open.onclick = function () { C.notice(""); refresh(r.id); };
      body.appendChild(el("tr", { "data-id": String(r.id), "data-state": r.state, class: current ? "current" : "" }, [
        el("td", { class: "name", "data-key": "revision" }, [current ? label + "（本页）" : open]),
        el("td", { "data-key": "state", "data-label": "状态" }, [C.stateBadge(r.state, r.state_label)]),
        el("td", { class: "num", "data-key": "pool", "data-label": "绩效池", "data-value": r.pool }, [C.money(r.pool)]),
        el("td", { "data-key": "created", "data-label": "生成" }, [C.who(r.created_by_name || r.created_by, r.created_at)]),
        el("td", { "data-key": "confirmed", "data-label": "确认" }, [C.who(r.confirmed_by_name || r.confirmed_by, r.confirmed_at)]),
      ]));
    });
    $("revisions-empty").hidden = revisions.length > 0;
  }

  function renderActions() {
    var confirmed = revisions.some(function (r) { return r.state === "confirmed"; });
    var approved = settlement.state === "approved";
    $("generate").hidden = !manager || !approved || confirmed;
    $("generate").textContent = revisions.length ? "重新生成分配方案" : "生成分配方案";
    $("confirm").hidden = !manager || !shown || shown.state !== "draft";
    if (!shown) {
      $("distribution-hint").className = "hint";
      $("distribution-hint").textContent = !approved
        ? "结算审定后才能进行内部分配（当前：" + (settlement.state_label || settlement.state) + "）"
        : manager ? "按当前规则生成分配方案后，确认前可重新生成" : "本机构尚未生成分配方案";
    }
  }

  async function act(button, path, done) {
    C.notice("");
    button.disabled = true;
    var reply = null;
    try {
      reply = await C.api("POST", path);
      C.notice(done(reply), true);
    } catch (e) {
      C.notice(e.message); // 409s: not approved yet, no rule, already confirmed, nothing to distribute
    } finally {
      button.disabled = false;
    }
    await refresh(reply ? reply.id : shown && shown.id);
  }

  async function refresh(distributionId) {
    var iid = settlement.institution_id;
    try {
      var got = await Promise.all([
        C.api("GET", "/institutions/" + iid + "/distribution-rules"),
        C.api("GET", C.withQuery("/institutions/" + iid + "/distributions", { period: settlement.period })),
        C.api("GET", "/institutions/" + iid + "/staff"),
      ]);
      staff = got[2].items || [];
      rules = got[0];
      revisions = (got[1].items || []).filter(function (d) { return d.settlement_id === settlement.id; });
      revisions.sort(function (a, b) { return b.revision - a.revision; });
      var pick = revisions.find(function (d) { return d.id === distributionId; }) ||
        revisions.find(function (d) { return d.state === "confirmed"; }) || revisions[0];
      shown = pick ? await C.api("GET", "/distributions/" + pick.id) : null;
    } catch (e) {
      return C.failure(e);
    }
    window.history.replaceState(null, "", C.withQuery(window.location.pathname, { distribution: shown && shown.id }));
    known = {};
    staff.forEach(function (m) { known[String(m.member_id)] = m.name; });
    if (shown) shown.shares.forEach(function (sh) { if (sh.name) known[String(sh.member_id)] = sh.name; });
    knownMembers();
    // What the administrator is typing stays while the distribution changes (generated, confirmed, another
    // revision opened); a newly saved rule is shown as stored.
    var version = rules.current ? rules.current.version : 0;
    if (version !== filled) {
      fillRule();
      filled = version;
    } else {
      $("coefficients").querySelectorAll("tbody tr").forEach(function (tr) {
        tr.querySelector(".member-name").textContent = memberName(tr.querySelector('input[data-part="member_id"]').value.trim());
      });
    }
    renderDistribution(shown);
    renderRevisions();
    renderActions();
    C.ready();
  }

  async function load() {
    try {
      settlement = await C.api("GET", "/settlements/" + cfg.settlementId);
      manager = await C.administers(settlement.institution_id);
    } catch (e) {
      return C.failure(e);
    }
    details(settlement);
    $("rule-form").onsubmit = saveRule;
    $("add-coefficient").onclick = function () {
      var row = coefficientRow({});
      $("coefficients").querySelector("tbody").appendChild(row);
      renumber();
      row.querySelector("input").focus();
    };
    $("generate").onclick = function () {
      act(this, "/settlements/" + settlement.id + "/distributions", function (d) {
        return "已生成第 " + d.revision + " 版分配方案（草稿）：" + d.shares.length + " 人，绩效池 " + C.grouped(d.pool) + " 元";
      });
    };
    $("confirm").onclick = function () {
      act(this, "/distributions/" + shown.id + "/confirm", function (d) {
        return "已确认第 " + d.revision + " 版分配方案，每人将收到自己的分配通知";
      });
    };
    await refresh(wanted());
  }

  if (C.signedIn) load();
})();
