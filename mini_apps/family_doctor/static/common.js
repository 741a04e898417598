/* What the family-doctor pages share (window.FamilyDoctor): the API with the shell's session (session.js), the
   way back to the shell to sign in, labels, and showing an API error next to the form field it names.
   Plain ES2017, no framework, no build step. */
(function () {
  "use strict";

  var cfg = JSON.parse(document.getElementById("wb-config").textContent);
  var session = window.WorkbenchSession;
  var $ = function (id) { return document.getElementById(id); };

  var TAGS = {};
  var TAG_CODES = cfg.tags.map(function (pair) { TAGS[pair[0]] = pair[1]; return pair[0]; });
  var STATES = { active: "有效", expiring: "即将到期", expired: "已过期", terminated: "已解约", renewed: "已续约" };
  var SEXES = { M: "男", F: "女" };

  var el = window.WorkbenchDom.el, status = window.WorkbenchDom.status;

  // --- sign-in and the API ----------------------------------------------------------------------------------

  function signIn() {
    // The shell signs in (free-login inside DingTalk) and comes back to this very page.
    session.clearTokens();
    window.location.replace(cfg.shell + "?next=" + encodeURIComponent(window.location.pathname + window.location.search));
    return new Promise(function () {}); // the page is going away: nothing after this runs
  }

  async function api(method, path, body) {
    try {
      return await session.api(method, cfg.api + path, body);
    } catch (e) {
      if (e.status === 401) return signIn(); // session.js already tried the refresh token once
      throw e;
    }
  }

  // --- page states ------------------------------------------------------------------------------------------

  function ready() { $("status").hidden = true; $("app").hidden = false; }

  function notice(text, ok) {
    $("notice").textContent = text || "";
    $("notice").className = ok ? "notice ok" : "notice";
    $("notice").hidden = !text;
  }

  function message(e) { return e.code === "network" ? e.message : "加载失败：" + e.message; }

  function failure(e) {
    // Before anything is shown the page says why it cannot show it; afterwards a notice above what is there.
    if (!$("app").hidden) return notice(message(e));
    if (e.status === 404) return status("未找到该记录，或不在您的团队范围内", true, true);
    if (e.status === 403) return status("您没有权限查看", true, true);
    return status(message(e), true, false);
  }

  // --- forms ------------------------------------------------------------------------------------------------

  function clearErrors(form) {
    form.querySelectorAll("[data-error-for]").forEach(function (p) { p.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach(function (i) { i.removeAttribute("aria-invalid"); });
    var general = form.querySelector(".form-error");
    general.textContent = "";
    general.hidden = true;
  }

  function fieldErrors(e) {
    // {field: message}: every field marshmallow named (`details`), else the one the error names.
    var found = {};
    var details = e.details && (e.details.json || e.details.query || e.details);
    if (details && typeof details === "object") {
      Object.keys(details).forEach(function (key) {
        var value = details[key];
        while (value && typeof value === "object" && !Array.isArray(value)) value = value[Object.keys(value)[0]];
        found[key] = Array.isArray(value) ? String(value[0]) : String(value);
      });
    }
    if (e.field) found[String(e.field).split(".")[0]] = e.message;
    return found;
  }

  function showErrors(form, e) {
    // An API error goes next to the field it names; one naming no field of this form goes under the form.
    clearErrors(form);
    var errors = fieldErrors(e);
    var first = null;
    var placed = false;
    Object.keys(errors).forEach(function (name) {
      var slot = form.querySelector('[data-error-for="' + name + '"]');
      if (!slot) return;
      slot.textContent = errors[name];
      placed = true;
      var input = form.querySelector('[name="' + name + '"]');
      if (input) {
        input.setAttribute("aria-invalid", "true");
        first = first || input;
      }
    });
    if (!placed) {
      var general = form.querySelector(".form-error");
      general.textContent = e.code === "network" ? e.message : e.message || "提交失败";
      general.hidden = false;
    }
    if (first) first.focus();
  }

  // --- what every page shows --------------------------------------------------------------------------------

  function stateBadge(state) { return el("span", { class: "badge " + state, text: STATES[state] || state }); }
  function tagChips(codes) {
    return el("span", { class: "chips" }, (codes || []).map(function (code) {
      return el("span", { class: "chip", "data-tag": code, text: TAGS[code] || code });
    }));
  }
  function today() {
    var d = new Date();
    var pad = function (n) { return n < 10 ? "0" + n : "" + n; };
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate());
  }
  function residentUrl(id) { return cfg.resident + id; }
  function teamLabel(team, teams) {
    // The institution is worth naming only when the teams come from more than one.
    var institutions = {};
    (teams || []).forEach(function (t) { institutions[t.institution_id] = true; });
    return Object.keys(institutions).length > 1 ? team.institution_name + " · " + team.name : team.name;
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

  window.FamilyDoctor = {
    cfg: cfg, $: $, el: el, api: api, signIn: signIn, status: status, ready: ready, notice: notice,
    failure: failure, clearErrors: clearErrors, showErrors: showErrors, stateBadge: stateBadge, tagChips: tagChips,
    today: today, residentUrl: residentUrl, teamLabel: teamLabel, checkIdNumber: checkIdNumber,
    STATES: STATES, SEXES: SEXES, TAGS: TAGS, TAG_CODES: TAG_CODES, signedIn: !!session.tokens(),
  };

  if (!session.tokens()) signIn();
})();
