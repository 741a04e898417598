/* One task (/h5/apps/precision_control/tasks/<id>): the person (in the clear only when the API shows it: for who
   works the task), the campaign's result form built from its task template (choice → radio buttons or a select,
   number with its bounds, text, date, yes/no), the steps the state allows — 接收, 开始处理, 提交结果, 无法联系 (attempts
   and what was tried), 转出 (where to and why), 关闭 for the county — and the history. The API's 422 goes next to
   the field it names (`result.<code>`); a 409 (someone else moved the task: a card, a colleague) shows its message
   and the page reloads what is true now. */
(function () {
  "use strict";

  var P = window.PrecisionControl;
  var cfg = P.cfg, $ = P.$, el = P.el;
  var KINDS = P.labels(cfg.kinds);
  var RADIO_UP_TO = 4; // more choices than this: a select
  var task = null;

  function pair(dl, label, value, key) {
    if (value === null || value === undefined || value === "") return;
    dl.append(el("dt", { text: label }), el("dd", key ? { "data-field": key } : {}, [value]));
  }

  function details(t) {
    $("campaign").textContent = t.campaign_name;
    $("state").replaceChildren(P.stateBadge(t.state));
    $("priority").replaceChildren(P.priorityBadge(t.person && t.person.priority) || "");
    var dl = $("details");
    dl.textContent = "";
    var kind = (t.task_template || {}).kind;
    pair(dl, "任务类型", KINDS[kind] || kind, "kind");
    pair(dl, "截止时间", P.dueLine(t), "due");
    pair(dl, "承办医生", t.member_name, "member");
    pair(dl, "接收时间", P.when(t.accepted_at), "accepted_at");
    pair(dl, "办结时间", P.when(t.finished_at), "finished_at");
  }

  function person(t) {
    var p = t.person || {};
    var dl = $("person");
    dl.textContent = "";
    var clear = p.name !== undefined && p.name !== null;
    $("masked-hint").hidden = clear;
    pair(dl, "姓名", clear ? p.name : p.name_masked || "（已匿名）", "name");
    pair(dl, "身份证号", clear ? p.id_number : p.id_masked, "id_number");
    var phone = clear ? p.phone : p.phone_masked;
    pair(dl, "联系电话", clear && phone ? el("a", { href: "tel:" + phone, text: phone }) : phone, "phone");
    pair(dl, "住址", clear ? p.address : "", "address");
    pair(dl, "行政区划", p.division_code, "division_code");
    pair(dl, "人群类别", p.category, "category");
    pair(dl, "来源", p.source_note, "source_note");
  }

  function shown(spec, value) {
    if (spec.type === "bool") return value ? "是" : "否";
    return String(value);
  }

  function result(t) {
    var box = $("result");
    box.textContent = "";
    $("result-card").hidden = !t.result;
    if (!t.result) return;
    (t.task_template.fields || []).forEach(function (spec) {
      if (t.result[spec.code] !== undefined) pair(box, spec.label, shown(spec, t.result[spec.code]), spec.code);
    });
    if (t.positive !== null && t.positive !== undefined) {
      pair(box, "结论", el("span", { class: t.positive ? "badge positive" : "badge", text: t.positive ? "阳性发现" : "未见阳性" }), "positive");
    }
  }

  // -- the result form, from the template ----------------------------------------------------------------------

  function radios(name, pairs) {
    // The first radio carries the field's id, so a label or an error can point at the group.
    return el("div", { class: "choices", role: "radiogroup" }, pairs.map(function (p, i) {
      var attrs = { type: "radio", name: name, value: p[0] };
      if (!i) attrs.id = name;
      return el("label", {}, [el("input", attrs), p[1]]);
    }));
  }

  function input(spec) {
    var name = "result." + spec.code;
    var attrs = { id: name, name: name };
    if (spec.type === "choice") {
      var pairs = (spec.choices || []).map(function (c) { return [c, c]; });
      if (pairs.length <= RADIO_UP_TO) return radios(name, pairs);
      var select = el("select", attrs);
      P.options(select, pairs, "请选择");
      return select;
    }
    if (spec.type === "bool") return radios(name, [["true", "是"], ["false", "否"]]);
    if (spec.type === "number") {
      attrs.type = "number";
      attrs.step = "any";
      attrs.inputmode = "decimal";
      if (spec.min !== undefined && spec.min !== null) attrs.min = String(spec.min);
      if (spec.max !== undefined && spec.max !== null) attrs.max = String(spec.max);
      return el("input", attrs);
    }
    if (spec.type === "date") {
      attrs.type = "date";
      return el("input", attrs);
    }
    attrs.maxlength = "500";
    attrs.rows = "2";
    return el("textarea", attrs);
  }

  function bounds(spec) {
    if (spec.type !== "number") return null;
    var has = function (v) { return v !== undefined && v !== null; };
    if (has(spec.min) && has(spec.max)) return spec.min + " ～ " + spec.max;
    if (has(spec.min)) return "不小于 " + spec.min;
    if (has(spec.max)) return "不大于 " + spec.max;
    return null;
  }

  function buildForm(t) {
    var box = $("result-fields");
    if (box.dataset.built === String(t.id)) return; // keep what the doctor typed across reloads
    box.textContent = "";
    (t.task_template.fields || []).forEach(function (spec) {
      var name = "result." + spec.code;
      var hint = bounds(spec);
      box.appendChild(el("div", { class: "field", "data-code": spec.code, "data-type": spec.type }, [
        el(spec.type === "choice" || spec.type === "bool" ? "span" : "label",
          spec.type === "choice" || spec.type === "bool" ? { class: "label" } : { for: name },
          [spec.label, spec.required ? el("span", { class: "req", text: " *" }) : null]),
        input(spec),
        hint ? el("p", { class: "hint", text: "范围：" + hint }) : null,
        el("p", { class: "field-error", "data-error-for": name }),
      ]));
    });
    box.dataset.built = String(t.id);
  }

  function values() {
    // The filled fields only: an empty required one is the server's to name (请填写…).
    var out = {};
    (task.task_template.fields || []).forEach(function (spec) {
      var name = "result." + spec.code;
      var value;
      if (spec.type === "choice" || spec.type === "bool") {
        var picked = $("result-form").querySelector('[name="' + name + '"]:checked') ||
          $("result-form").querySelector('select[name="' + name + '"]');
        value = picked ? picked.value : "";
        if (spec.type === "bool" && value) value = value === "true";
      } else {
        value = $("result-form").querySelector('[name="' + name + '"]').value.trim();
        if (spec.type === "number" && value !== "") value = Number(value);
      }
      if (value !== "") out[spec.code] = value;
    });
    return out;
  }

  // -- steps ---------------------------------------------------------------------------------------------------

  var STEP_BUTTONS = { assigned: ["accept", "start"], accepted: ["start"], in_progress: [] };
  var STEP_LABELS = { accept: "接收", start: "开始处理" };

  function work(t) {
    var working = t.may_work && cfg.openStates.indexOf(t.state) >= 0 && t.state !== "queued";
    $("work-card").hidden = !working;
    $("close-card").hidden = !t.may_close;
    var box = $("steps");
    box.textContent = "";
    if (!working) return;
    (STEP_BUTTONS[t.state] || []).forEach(function (step) {
      var b = el("button", { type: "button", class: step === "accept" ? "primary" : "btn plain", id: "step-" + step, text: STEP_LABELS[step] });
      b.onclick = function () { act(step, null, {}, STEP_LABELS[step]); };
      box.appendChild(b);
    });
    box.hidden = !box.children.length;
    buildForm(t);
  }

  async function act(step, form, body, label) {
    P.notice("");
    if (form) P.clearErrors(form);
    var buttons = document.querySelectorAll("#work-card button, #close-card button");
    buttons.forEach(function (b) { b.disabled = true; });
    try {
      await P.api("POST", "/tasks/" + task.id + "/" + step, body);
    } catch (e) {
      buttons.forEach(function (b) { b.disabled = false; });
      if (e.status === 409) {
        await load();
        return P.notice(e.message);
      }
      if (form) return P.showErrors(form, e);
      return P.notice(e.message);
    }
    buttons.forEach(function (b) { b.disabled = false; });
    if (form) form.reset();
    await load();
    P.notice("已" + label, true);
    window.scrollTo(0, 0);
  }

  function missing(form, required) {
    // Empty required inputs are named here, in Chinese, before the schema's own (English) messages would be.
    var errors = {};
    Object.keys(required).forEach(function (name) {
      var input = form.querySelector('[name="' + name + '"]');
      if (!input.value.trim()) errors[name] = required[name];
    });
    if (!Object.keys(errors).length) return false;
    P.showErrors(form, { message: "请补全必填项", details: errors });
    return true;
  }

  function timeline(events) {
    var list = $("timeline");
    list.textContent = "";
    events.slice().reverse().forEach(function (ev) {
      var who = ev.actor_name || (String(ev.actor || "").indexOf("system") === 0 ? "系统" : "");
      list.appendChild(el("li", { "data-action": ev.action }, [
        el("time", { text: P.when(ev.at) }),
        el("span", {}, [
          el("b", { text: P.EVENTS[ev.action] || ev.action }),
          " → " + (P.STATES[ev.to_state] || ev.to_state),
          who ? " · " + who : "",
        ]),
        ev.reason ? el("div", { class: "hint", text: (ev.action === "complete" ? "备注：" : "原因：") + ev.reason }) : null,
      ]));
    });
    if (!events.length) list.appendChild(el("li", { class: "hint", text: "暂无记录" }));
  }

  async function load() {
    try {
      task = await P.api("GET", "/tasks/" + cfg.taskId);
    } catch (e) {
      return P.failure(e);
    }
    details(task);
    person(task);
    result(task);
    work(task);
    timeline(task.events || []);
    P.ready();
  }

  function start() {
    $("result-form").onsubmit = function (event) {
      event.preventDefault();
      var body = { result: values() };
      var note = $("note").value.trim();
      if (note) body.note = note;
      act("complete", $("result-form"), body, "提交结果");
    };
    $("unreachable-form").onsubmit = function (event) {
      event.preventDefault();
      if (missing($("unreachable-form"), { attempts: "请填写已联系次数（1–20次）", reason: "请填写情况说明" })) return;
      var attempts = Number($("unreachable-attempts").value.trim());
      if (!Number.isInteger(attempts) || attempts < 1 || attempts > 20) {
        return P.showErrors($("unreachable-form"), { field: "attempts", message: "联系次数须为1到20之间的整数" });
      }
      var body = { reason: $("unreachable-reason").value.trim(), attempts: attempts };
      act("unreachable", $("unreachable-form"), body, "标记无法联系");
    };
    $("transfer-form").onsubmit = function (event) {
      event.preventDefault();
      if (missing($("transfer-form"), { destination: "请填写转往地或接收单位", reason: "请填写转出原因" })) return;
      var body = { destination: $("transfer-destination").value.trim(), reason: $("transfer-reason").value.trim() };
      act("transfer", $("transfer-form"), body, "转出");
    };
    $("close-form").onsubmit = function (event) {
      event.preventDefault();
      if (missing($("close-form"), { reason: "请填写关闭原因" })) return;
      act("close", $("close-form"), { reason: $("close-reason").value.trim() }, "关闭任务");
    };
    load();
  }

  if (P.signedIn) start();
})();
