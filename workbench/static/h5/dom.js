/* Building and switching page content, shared by every H5 page (window.WorkbenchDom): `el` makes an element from
   attributes and children (strings become text; null, undefined and "" are skipped), `status` swaps the page's
   content (#app) for a loading or error line (#status) in the layout the pages share; mini apps' pages also take
   sign-in through the shell, API errors placed next to form fields and the GB 11643 ID number hint from here.
   Plain ES2017. */
(function () {
  "use strict";

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "onclick") node.onclick = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) {
      if (c !== null && c !== undefined && c !== "" && c !== false) {
        node.appendChild(typeof c === "object" ? c : document.createTextNode(c));
      }
    });
    return node;
  }

  function status(text, error, link) {
    byId("app").hidden = true;
    byId("status").hidden = false;
    byId("status").className = error ? "status error" : "status";
    byId("status").querySelector(".spin").hidden = !!error;
    byId("status-text").textContent = text;
    byId("status-link").hidden = !link;
  }

  // --- mini apps' pages: signing in through the shell, API errors next to form fields, ID number hint ---------

  function byId(id) { return document.getElementById(id); }

  function ready() { byId("status").hidden = true; byId("app").hidden = false; }

  function notice(text, ok) {
    byId("notice").textContent = text || "";
    byId("notice").className = ok ? "notice ok" : "notice";
    byId("notice").hidden = !text;
  }

  function failure(e, notFound) {
    // Before anything is shown the page says why it cannot show it; afterwards a notice above what is there.
    var text = e.code === "network" ? e.message : "加载失败：" + e.message;
    if (!byId("app").hidden) return notice(text);
    if (e.status === 404) return status(notFound || "未找到该记录，或不在您的范围内", true, true);
    if (e.status === 403) return status("您没有权限查看", true, true);
    return status(text, true, false);
  }

  function signIn(shell) {
    // The shell signs in (free-login inside DingTalk) and comes back to this very page.
    window.WorkbenchSession.clearTokens();
    window.location.replace(shell + "?next=" + encodeURIComponent(window.location.pathname + window.location.search));
    return new Promise(function () {}); // the page is going away: nothing after this runs
  }

  function fieldErrors(e) {
    // {dotted field name: message}: every field marshmallow named (`details`, nested ones as `a.b`), else the one
    // the error names (`primary_diagnosis.code`).
    var found = {};
    function walk(prefix, value) {
      if (value && typeof value === "object" && !Array.isArray(value)) {
        Object.keys(value).forEach(function (k) { walk(prefix ? prefix + "." + k : k, value[k]); });
      } else if (prefix) {
        found[prefix] = Array.isArray(value) ? String(value[0]) : String(value);
      }
    }
    var details = e.details && (e.details.json || e.details.query || e.details.form || e.details);
    if (details && typeof details === "object") walk("", details);
    if (e.field) found[String(e.field)] = e.message;
    return found;
  }

  function clearErrors(form) {
    form.querySelectorAll("[data-error-for]").forEach(function (p) { p.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach(function (i) { i.removeAttribute("aria-invalid"); });
    var general = form.querySelector(".form-error");
    if (general) { general.textContent = ""; general.hidden = true; }
  }

  function showErrors(form, e) {
    // An API error goes next to the field it names (the longest named prefix a slot exists for:
    // `secondary_diagnoses.1.code`, then `secondary_diagnoses`); one naming no field of this form goes under it.
    clearErrors(form);
    var errors = fieldErrors(e);
    var first = null;
    var placed = false;
    Object.keys(errors).forEach(function (name) {
      var parts = name.split("."), slot = null, key = name;
      while (parts.length && !slot) {
        key = parts.join(".");
        slot = form.querySelector('[data-error-for="' + key + '"]');
        parts.pop();
      }
      if (!slot) return;
      if (!slot.textContent) slot.textContent = errors[name];
      placed = true;
      var input = form.querySelector('[name="' + key + '"]');
      if (input) {
        input.setAttribute("aria-invalid", "true");
        first = first || input;
      }
    });
    if (!placed) {
      var general = form.querySelector(".form-error");
      general.textContent = e.message || "提交失败";
      general.hidden = false;
    }
    if (first) first.focus();
  }

  function today() {
    var d = new Date();
    var pad = function (n) { return n < 10 ? "0" + n : "" + n; };
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate());
  }

  // GB 11643: 17 digits weighted, modulo 11, gives the check character. A hint only: the server decides.
  var WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  var CHECK = "10X98765432";
  function checkIdNumber(raw) {
    var number = (raw || "").trim().toUpperCase();
    if (!number) return null;
    if (!/^\d{17}[\dX]$/.test(number)) return { ok: false, text: "身份证号须为18位：17位数字加1位校验码（数字或X）" };
    var birth = number.slice(6, 10) + "-" + number.slice(10, 12) + "-" + number.slice(12, 14);
    var date = new Date(birth + "T00:00:00Z");
    if (isNaN(date) || date.toISOString().slice(0, 10) !== birth || birth < "1900-01-01" || birth > today()) {
      return { ok: false, text: "身份证号中的出生日期无效" };
    }
    var sum = 0;
    for (var i = 0; i < 17; i++) sum += Number(number[i]) * WEIGHTS[i];
    if (CHECK[sum % 11] !== number[17]) return { ok: false, text: "校验码不符，请核对身份证号" };
    return { ok: true, text: "出生日期 " + birth + " · " + (Number(number[16]) % 2 ? "男" : "女") };
  }

  window.WorkbenchDom = {
    el: el, status: status, ready: ready, notice: notice, failure: failure, signIn: signIn, fieldErrors: fieldErrors,
    clearErrors: clearErrors, showErrors: showErrors, today: today, checkIdNumber: checkIdNumber,
  };
})();
