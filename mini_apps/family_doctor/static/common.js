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

  function signIn() { return window.WorkbenchDom.signIn(cfg.shell); }

  async function api(method, path, body) {
    try {
      return await session.api(method, cfg.api + path, body);
    } catch (e) {
      if (e.status === 401) return signIn(); // session.js already tried the refresh token once
      throw e;
    }
  }

  // --- page states (the shared layout's, from dom.js) -------------------------------------------------------

  var ready = window.WorkbenchDom.ready, notice = window.WorkbenchDom.notice;
  function failure(e) { return window.WorkbenchDom.failure(e, "未找到该记录，或不在您的团队范围内"); }

  // --- forms: API errors next to the fields they name (shared with other apps' pages, dom.js) ---------------

  var clearErrors = window.WorkbenchDom.clearErrors, showErrors = window.WorkbenchDom.showErrors;

  // --- what every page shows --------------------------------------------------------------------------------

  function stateBadge(state) { return el("span", { class: "badge " + state, text: STATES[state] || state }); }
  function tagChips(codes) {
    return el("span", { class: "chips" }, (codes || []).map(function (code) {
      return el("span", { class: "chip", "data-tag": code, text: TAGS[code] || code });
    }));
  }
  var today = window.WorkbenchDom.today;
  function residentUrl(id) { return cfg.resident + id; }
  function teamLabel(team, teams) {
    // The institution is worth naming only when the teams come from more than one.
    var institutions = {};
    (teams || []).forEach(function (t) { institutions[t.institution_id] = true; });
    return Object.keys(institutions).length > 1 ? team.institution_name + " · " + team.name : team.name;
  }

  var checkIdNumber = window.WorkbenchDom.checkIdNumber; // GB 11643, a hint only

  window.FamilyDoctor = {
    cfg: cfg, $: $, el: el, api: api, signIn: signIn, status: status, ready: ready, notice: notice,
    failure: failure, clearErrors: clearErrors, showErrors: showErrors, stateBadge: stateBadge, tagChips: tagChips,
    today: today, residentUrl: residentUrl, teamLabel: teamLabel, checkIdNumber: checkIdNumber,
    STATES: STATES, SEXES: SEXES, TAGS: TAGS, TAG_CODES: TAG_CODES, signedIn: !!session.tokens(),
  };

  if (!session.tokens()) signIn();
})();
