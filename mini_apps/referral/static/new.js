/* 新建转诊 (/h5/apps/referral/new): the referral form, mobile first. The target comes from `/targets` (the
   county's lead hospital and member institutions with their departments), the patient from the caller's signed
   residents or typed in, diagnoses from the ICD-10 search as you type. 提交 or 保存草稿; attachments upload once
   the referral exists. The server decides; its errors show next to the fields they name.
   Two more ways in: `?parent=<id>` files a down-referral (转回基层) from a completed up-referral the caller's
   institution treated (patient, target and diagnoses from it, plus 康复计划, 用药清单, 随访安排), and `?id=<id>`
   reopens a draft: saved with PATCH (fields left alone keep their values), 提交 submits it. */
(function () {
  "use strict";

  var R = window.Referral;
  var cfg = R.cfg, $ = R.$, el = R.el;
  var targets = [];
  var residents = [];
  var residentId = null;
  var secondary = [];
  var editing = null; // the draft's id when reopening one: saved with PATCH
  var parentId = null; // a down-referral's up-referral

  // --- ICD-10 search as you type ------------------------------------------------------------------------------

  function icdSearch(input, list, pick) {
    var timer = null, asked = 0;
    input.addEventListener("input", function () {
      clearTimeout(timer);
      var q = input.value.trim();
      if (!q) { list.textContent = ""; return; }
      timer = setTimeout(async function () {
        var mine = ++asked;
        try {
          var found = await R.api("GET", "/icd10?" + new URLSearchParams({ q: q, limit: "10" }));
        } catch (e) {
          return;
        }
        if (mine !== asked) return;
        list.textContent = "";
        found.items.forEach(function (d) {
          var b = el("button", { type: "button", "data-code": d.code }, [el("b", { text: d.code }), " " + d.name]);
          b.onclick = function () { list.textContent = ""; pick(d); };
          list.appendChild(el("li", {}, [b]));
        });
      }, 200);
    });
  }

  function showSecondary() {
    var box = $("secondary");
    box.textContent = "";
    secondary.forEach(function (d, i) {
      var remove = el("button", { type: "button", "aria-label": "移除 " + d.name, text: "×" });
      remove.onclick = function () { secondary.splice(i, 1); showSecondary(); };
      box.appendChild(el("span", { "data-code": d.code }, [d.code + " " + d.name, remove]));
    });
  }

  // --- target institution and department ---------------------------------------------------------------------

  function fillTargets() {
    var direction = $("direction").value;
    // Up: the lead hospital(s); down: the member institutions; lateral: any.
    var shown = targets.filter(function (t) {
      if (direction === "up") return t.level === "medical_community_lead";
      if (direction === "down") return t.level === "member_institution";
      return true;
    });
    var before = $("target_institution_id").value;
    R.options($("target_institution_id"), shown.map(function (t) { return [t.id, t.name]; }), shown.length === 1 ? undefined : "请选择接收机构");
    if (shown.some(function (t) { return String(t.id) === before; })) $("target_institution_id").value = before;
    fillDepartments();
  }

  function toggleDown() {
    // The rehab plan, medication list and follow-up schedule belong to a down-referral only.
    $("down-card").hidden = $("direction").value !== "down";
  }

  function fillDepartments() {
    var id = $("target_institution_id").value;
    var target = targets.filter(function (t) { return String(t.id) === id; })[0];
    var departments = target ? target.departments : [];
    R.options($("target_department_id"), departments.map(function (d) { return [d.id, d.name]; }),
      $("direction").value === "down" ? "不指定科室" : "请选择接收科室");
  }

  // --- patient ------------------------------------------------------------------------------------------------

  function residentSearch() {
    var q = $("resident-q").value.trim();
    var list = $("resident-suggest");
    list.textContent = "";
    if (!q) return;
    residents.filter(function (r) { return (r.name || "").indexOf(q) >= 0; }).slice(0, 10).forEach(function (r) {
      var b = el("button", { type: "button", "data-id": String(r.id) }, [el("b", { text: r.name }), " " + (r.id_number || "")]);
      b.onclick = function () {
        list.textContent = "";
        residentId = r.id;
        $("resident-q").value = "";
        $("resident-picked").textContent = "已选择签约居民：" + r.name + " " + (r.id_number || "") + "（无需再填写下方信息）";
        ["patient.name", "patient.id_number", "patient.phone"].forEach(function (id) { $(id).disabled = true; });
        var manual = el("button", { type: "button", class: "btn plain", text: "改为手动填写" });
        manual.onclick = function () {
          residentId = null;
          $("resident-picked").textContent = "";
          ["patient.name", "patient.id_number", "patient.phone"].forEach(function (id) { $(id).disabled = false; });
        };
        $("resident-picked").append(" ", manual);
      };
      list.appendChild(el("li", {}, [b]));
    });
  }

  function idHint() {
    var result = R.checkIdNumber($("patient.id_number").value);
    $("id-hint").textContent = result ? result.text : "";
    $("id-hint").className = result && !result.ok ? "hint error" : "hint";
  }

  // --- prefilling: a draft reopened, or a down-referral from its up-referral -------------------------------------

  function set(id, value) {
    // Only a value the select offers (an institution no longer offered stays blank: the server names the field).
    var input = $(id);
    var wanted = value === null || value === undefined ? "" : String(value);
    if (input.tagName === "SELECT" && !Array.prototype.some.call(input.options, function (o) { return o.value === wanted; })) return;
    input.value = wanted;
  }

  function setPrimary(d) {
    $("primary_diagnosis.code").value = (d && d.code) || "";
    $("primary-name").textContent = (d && d.name) || "";
  }

  function describe(p) {
    return [p.name, p.sex === "M" ? "男" : p.sex === "F" ? "女" : "", p.age != null ? p.age + "岁" : "", p.id_number].filter(Boolean).join(" ");
  }

  function patientFieldsHidden(hidden) {
    ["patient.name", "patient.id_number", "patient.phone"].forEach(function (id) { $(id).closest(".field").hidden = hidden; });
  }

  function setHeading(text) {
    document.querySelector(".bar h1").textContent = text;
    document.title = text;
  }

  function showParent(p) {
    parentId = p.id;
    $("parent-card").hidden = false;
    $("parent-info").textContent = "转回自上转 " + p.referral_no + " · " + describe(p.patient || {}) + " · 原申请方 " +
      [p.applicant_institution_name, p.applicant_department_name].filter(Boolean).join(" · ");
    $("direction").value = "down";
    $("direction").disabled = true; // a down-referral follows its up-referral: the direction is settled
    fillTargets();
    toggleDown();
  }

  function prefillDown(p) {
    // From the up-referral: back to the institution (and department) that referred the patient up.
    setHeading("转回基层");
    showParent(p);
    set("mode", "outpatient");
    set("priority", "routine");
    set("applicant_department_id", p.target_department_id);
    set("target_institution_id", p.applicant_institution_id);
    fillDepartments();
    set("target_department_id", p.applicant_department_id);
    set("reason_code", cfg.downReason);
    setPrimary(p.primary_diagnosis);
    secondary = (p.secondary_diagnoses || []).slice();
    showSecondary();
    $("patient-current").hidden = false;
    $("patient-current").textContent = "患者：" + describe(p.patient || {}) + "（沿用上转患者信息）";
    patientFieldsHidden(true);
  }

  function prefillDraft(r) {
    editing = r.id;
    setHeading("编辑草稿");
    $("form-mode").hidden = false;
    $("form-mode").textContent = "草稿 " + r.referral_no + "：修改后保存或提交";
    set("direction", r.direction);
    fillTargets();
    toggleDown();
    set("mode", r.mode);
    set("priority", r.priority);
    set("applicant_department_id", r.applicant_department_id);
    set("target_institution_id", r.target_institution_id);
    fillDepartments();
    set("target_department_id", r.target_department_id);
    set("reason_code", r.reason_code);
    $("reason_text").value = r.reason_text || "";
    $("consent").checked = !!r.consent;
    setPrimary(r.primary_diagnosis);
    secondary = (r.secondary_diagnoses || []).slice();
    showSecondary();
    var clinical = r.clinical || {};
    cfg.clinical.concat(cfg.downClinical).forEach(function (p) { $("c-" + p[0]).value = clinical[p[0]] || ""; });
    $("patient-current").hidden = false;
    $("patient-current").textContent = "患者：" + describe(r.patient || {}) + "（如需更换，请在下方重新填写）";
    if (r.target_member_id) $("target_doctor_userid").placeholder = "已指定（不填则保留）";
  }

  // --- submit -------------------------------------------------------------------------------------------------

  function body(submit) {
    var value = function (id) { return $(id).value.trim(); };
    var number = function (id) { return value(id) ? Number(value(id)) : null; };
    var down = value("direction") === "down";
    // Every field sent, empty ones as "": a reopened draft's cleared field is cleared (PATCH merges them).
    var clinical = {};
    cfg.clinical.forEach(function (p) { clinical[p[0]] = value("c-" + p[0]); });
    cfg.downClinical.forEach(function (p) { clinical[p[0]] = down ? value("c-" + p[0]) : ""; });
    var data = {
      submit: submit,
      direction: value("direction"),
      mode: value("mode"),
      priority: value("priority"),
      applicant_department_id: number("applicant_department_id"),
      target_institution_id: number("target_institution_id"),
      target_department_id: number("target_department_id"),
      reason_code: value("reason_code"),
      reason_text: value("reason_text"),
      consent: $("consent").checked,
      primary_diagnosis: { code: value("primary_diagnosis.code").toUpperCase() },
      secondary_diagnoses: secondary.map(function (d) { return { code: d.code }; }),
      clinical: clinical,
    };
    // A reopened draft keeps its named doctor unless another is typed (the API returns no userid to show).
    if (value("target_doctor_userid") || !editing) data.target_doctor_userid = value("target_doctor_userid") || null;
    if (parentId) data.parent_id = parentId;
    var typed = value("patient.name") || value("patient.id_number") || value("patient.phone");
    if (residentId) data.resident_id = residentId;
    // Reopened, or following an up-referral: the patient is kept unless one is typed in.
    else if (typed || (!editing && !parentId)) {
      data.patient = {
        name: value("patient.name"),
        id_number: value("patient.id_number").toUpperCase(),
        phone: value("patient.phone") || null,
      };
    }
    return data;
  }

  async function send(submit) {
    var form = $("referral-form");
    R.clearErrors(form);
    R.notice("");
    $("submit").disabled = $("draft").disabled = true;
    try {
      var referral = editing
        ? await R.api("PATCH", "/" + editing, body(submit))
        : await R.api("POST", "", body(submit));
    } catch (e) {
      $("submit").disabled = $("draft").disabled = false;
      R.showErrors(form, e);
      return;
    }
    var failed = await uploads(referral.id);
    // The filled-in form leaves the history: back from the new referral is the list.
    window.location.replace(R.referralUrl(referral.id) + (failed ? "?upload_failed=" + failed : "?created=1"));
  }

  async function uploads(id) {
    var files = Array.prototype.slice.call($("files").files || []);
    var failed = 0;
    for (var i = 0; i < files.length; i++) {
      var data = new FormData();
      data.append("kind", $("kind").value);
      data.append("file", files[i]);
      try { await R.upload("/" + id + "/attachments", data); } catch (e) { failed++; }
    }
    return failed;
  }

  async function start() {
    try {
      var offered = await R.api("GET", "/targets");
    } catch (e) {
      return R.failure(e);
    }
    targets = offered.targets || [];
    var own = offered.applicant_departments || [];
    R.options($("applicant_department_id"), own.map(function (d) { return [d.id, d.institution_name + " · " + d.name]; }),
      own.length === 1 ? undefined : "请选择申请科室");
    $("applicant-field").hidden = own.length === 1;
    R.options($("direction"), cfg.directions);
    R.options($("mode"), cfg.modes);
    R.options($("priority"), cfg.priorities);
    R.options($("reason_code"), cfg.reasons, "请选择");
    R.options($("kind"), cfg.attachmentKinds);
    var box = $("clinical");
    cfg.clinical.forEach(function (p) {
      box.appendChild(el("div", { class: "field" }, [
        el("label", { for: "c-" + p[0], text: p[1] }),
        el("textarea", { id: "c-" + p[0], name: "clinical." + p[0], maxlength: "4000", rows: "2" }),
        el("p", { class: "field-error", "data-error-for": "clinical." + p[0] }),
      ]));
    });
    var down = $("down-clinical");
    cfg.downClinical.forEach(function (p) {
      down.appendChild(el("div", { class: "field" }, [
        el("label", { for: "c-" + p[0], text: p[1] }),
        el("textarea", { id: "c-" + p[0], name: "clinical." + p[0], maxlength: "4000", rows: "3" }),
        el("p", { class: "field-error", "data-error-for": "clinical." + p[0] }),
      ]));
    });
    fillTargets();
    toggleDown();
    $("direction").onchange = function () { fillTargets(); toggleDown(); };
    $("target_institution_id").onchange = fillDepartments;

    icdSearch($("primary_diagnosis.code"), $("primary-suggest"), function (d) {
      $("primary_diagnosis.code").value = d.code;
      $("primary-name").textContent = d.name;
    });
    $("primary_diagnosis.code").addEventListener("input", function () { $("primary-name").textContent = ""; });
    icdSearch($("secondary-q"), $("secondary-suggest"), function (d) {
      $("secondary-q").value = "";
      if (!secondary.some(function (s) { return s.code === d.code; })) secondary.push(d);
      showSecondary();
    });
    $("patient.id_number").oninput = idHint;

    // The caller's signed residents, when they are on a family-doctor team (filtered here: few hundred at most).
    try {
      residents = (await R.api("GET", cfg.familyDoctorApi + "/residents?per_page=200")).items || [];
    } catch (e) {
      residents = [];
    }
    $("resident-field").hidden = residents.length === 0;
    $("resident-q").oninput = residentSearch;

    var q = new URLSearchParams(window.location.search);
    try {
      if (q.get("id")) {
        var draft = await R.api("GET", "/" + encodeURIComponent(q.get("id")));
        // Only a draft is edited here; anything further along is shown on its own page.
        if (draft.state !== "draft" || (draft.sides || []).indexOf("applicant") < 0) {
          return window.location.replace(R.referralUrl(draft.id));
        }
        if (draft.parent_id) {
          // Shown for context; out of reach now, the draft keeps its parent anyway (PATCH leaves it alone).
          try { showParent(await R.api("GET", "/" + draft.parent_id)); } catch (e) { parentId = null; }
        }
        prefillDraft(draft);
      } else if (q.get("parent")) {
        prefillDown(await R.api("GET", "/" + encodeURIComponent(q.get("parent"))));
      }
    } catch (e) {
      return R.failure(e);
    }

    $("referral-form").onsubmit = function (event) { event.preventDefault(); send(true); };
    $("draft").onclick = function () { send(false); };
    R.ready();
  }

  if (R.signedIn) start();
})();
