/* 新建转诊 (/h5/apps/referral/new): the referral form, mobile first. The target comes from `/targets` (the
   county's lead hospital and member institutions with their departments), the patient from the caller's signed
   residents or typed in, diagnoses from the ICD-10 search as you type. 提交 or 保存草稿; attachments upload once
   the referral exists. The server decides; its errors show next to the fields they name. */
(function () {
  "use strict";

  var R = window.Referral;
  var cfg = R.cfg, $ = R.$, el = R.el;
  var targets = [];
  var residents = [];
  var residentId = null;
  var secondary = [];

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

  // --- submit -------------------------------------------------------------------------------------------------

  function body(submit) {
    var value = function (id) { return $(id).value.trim(); };
    var number = function (id) { return value(id) ? Number(value(id)) : null; };
    var clinical = {};
    cfg.clinical.forEach(function (p) { if (value("c-" + p[0])) clinical[p[0]] = value("c-" + p[0]); });
    var data = {
      submit: submit,
      direction: value("direction"),
      mode: value("mode"),
      priority: value("priority"),
      applicant_department_id: number("applicant_department_id"),
      target_institution_id: number("target_institution_id"),
      target_department_id: number("target_department_id"),
      target_doctor_userid: value("target_doctor_userid") || null,
      reason_code: value("reason_code"),
      reason_text: value("reason_text"),
      consent: $("consent").checked,
      primary_diagnosis: { code: value("primary_diagnosis.code").toUpperCase() },
      secondary_diagnoses: secondary.map(function (d) { return { code: d.code }; }),
      clinical: clinical,
    };
    if (residentId) data.resident_id = residentId;
    else {
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
      var referral = await R.api("POST", "", body(submit));
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
    fillTargets();
    $("direction").onchange = fillTargets;
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

    $("referral-form").onsubmit = function (event) { event.preventDefault(); send(true); };
    $("draft").onclick = function () { send(false); };
    R.ready();
  }

  if (R.signedIn) start();
})();
