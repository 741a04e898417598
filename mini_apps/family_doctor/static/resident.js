/* A resident's card (/h5/apps/family_doctor/residents/<id>): details as the API gives them (ID number and phone
   masked), the current contract with 续约, the follow-ups (when the follow-up API is there), the contracts. */
(function () {
  "use strict";

  var FD = window.FamilyDoctor;
  var cfg = FD.cfg, $ = FD.$, el = FD.el;
  var RENEWABLE = ["active", "expiring", "expired"]; // shown states of a stored-active contract
  var resident = null;
  var teams = [];

  function fields(dl, pairs) {
    dl.textContent = "";
    pairs.forEach(function (pair) {
      if (pair[1] === null || pair[1] === undefined || pair[1] === "") return;
      dl.appendChild(el("dt", { text: pair[0] }));
      dl.appendChild(el("dd", { "data-field": pair[2] || "" }, [pair[1]]));
    });
  }

  function period(c) { return c.start_date + " 至 " + c.end_date; }

  function render(r) {
    resident = r;
    var c = r.contract;
    $("name").textContent = r.name;
    $("state").className = "badge " + (c ? c.state : "");
    $("state").textContent = c ? FD.STATES[c.state] || c.state : "未签约";
    fields($("fields"), [
      ["性别", FD.SEXES[r.sex] || r.sex, "sex"],
      ["出生日期", r.birth_date + (r.age != null ? "（" + r.age + "岁）" : ""), "birth_date"],
      ["身份证号", r.id_number, "id_number"],
      ["联系电话", r.phone || "未登记", "phone"],
      ["住址", r.address, "address"],
      ["行政区划", r.division_code, "division_code"],
      ["钉钉账号", r.dingtalk_userid ? "已绑定" : "未绑定", "dingtalk"],
      ["重点人群", r.tags && r.tags.length ? FD.tagChips(r.tags) : "无", "tags"],
    ]);
    $("no-contract").hidden = !!c;
    $("contract").hidden = !c;
    if (c) {
      fields($("contract"), [
        ["签约团队", c.team_name, "team"],
        ["服务包", c.package, "package"],
        ["签约期限", period(c), "period"],
        ["状态", FD.stateBadge(c.state), "state"],
      ]);
    }
    $("renew-open").hidden = !(c && RENEWABLE.indexOf(c.state) >= 0);
    var list = $("contracts");
    list.textContent = "";
    (r.contracts || []).forEach(function (k) {
      list.appendChild(el("li", { "data-id": String(k.id), "data-state": k.state }, [
        el("span", { class: "grow" }, [period(k), el("br"), el("small", { class: "hint", text: k.team_name + " · " + k.package +
          (k.terminated_reason ? " · 解约原因：" + k.terminated_reason : "") })]),
        FD.stateBadge(k.state),
      ]));
    });
  }

  // --- follow-ups: another part of the app serves them; the card shows them when it does -------------------

  async function loadFollowUps() {
    try {
      var data = await FD.api("GET", "/residents/" + cfg.residentId + "/follow-ups");
    } catch (e) {
      $("follow-ups").hidden = true; // not served (404/405), or not for this caller: the card stands without it
      return;
    }
    var items = Array.isArray(data) ? data : data.items || [];
    var list = $("follow-up-rows");
    list.textContent = "";
    var today = FD.today();
    items.forEach(function (f) {
      var late = f.state ? f.state === "overdue" : !f.done_on && f.due_date < today; // state: open | overdue | done
      var badge = f.done_on ? el("span", { class: "badge done", text: "已完成 " + f.done_on })
        : el("span", { class: "badge " + (late ? "overdue" : "due"), text: late ? "已逾期" : "待随访" });
      list.appendChild(el("li", { "data-id": String(f.id), "data-kind": f.kind || "" }, [
        el("span", { class: "grow" }, [f.kind_name || cfg.followUpKinds[f.kind] || f.kind || "随访", el("br"),
          el("small", { class: "hint", text: "应随访日期 " + f.due_date + (f.note ? " · " + f.note : "") })]),
        badge,
      ]));
    });
    $("follow-up-empty").hidden = items.length > 0;
    $("follow-ups").hidden = false;
  }

  // --- 续约 ----------------------------------------------------------------------------------------------------

  function openRenew() {
    var form = $("renew-form");
    FD.clearErrors(form);
    var select = $("renew-team_id");
    select.textContent = "";
    teams.forEach(function (t) { select.appendChild(el("option", { value: String(t.id), text: FD.teamLabel(t, teams) })); });
    select.value = String(resident.contract.team_id);
    $("renew-team-field").hidden = teams.length < 2 || !select.value;
    $("renew-package").value = resident.contract.package;
    $("renew-start_date").value = "";
    $("renew-end_date").value = "";
    form.hidden = false;
    $("renew-open").hidden = true;
  }

  function closeRenew() {
    $("renew-form").hidden = true;
    $("renew-open").hidden = !(resident.contract && RENEWABLE.indexOf(resident.contract.state) >= 0);
  }

  async function renew(event) {
    event.preventDefault();
    var form = $("renew-form");
    FD.clearErrors(form);
    var body = {};
    var team = $("renew-team_id").value;
    if (team && Number(team) !== resident.contract.team_id) body.team_id = Number(team);
    if ($("renew-package").value.trim()) body["package"] = $("renew-package").value.trim();
    if ($("renew-start_date").value) body.start_date = $("renew-start_date").value;
    if ($("renew-end_date").value) body.end_date = $("renew-end_date").value;
    $("renew-submit").disabled = true;
    try {
      var contract = await FD.api("POST", "/contracts/" + resident.contract.id + "/renew", body);
    } catch (e) {
      FD.showErrors(form, e);
      return;
    } finally {
      $("renew-submit").disabled = false;
    }
    form.hidden = true;
    FD.notice("续约成功：" + contract.start_date + " 至 " + contract.end_date, true);
    return load(true);
  }

  async function load(keepNotice) {
    try {
      var r = await FD.api("GET", "/residents/" + cfg.residentId);
    } catch (e) {
      return FD.failure(e);
    }
    if (!keepNotice) FD.notice("");
    render(r);
    closeRenew();
    FD.ready();
    return loadFollowUps();
  }

  async function start() {
    var query = new URLSearchParams(window.location.search);
    if (query.get("signed")) {
      FD.notice("签约成功", true);
      window.history.replaceState(null, "", window.location.pathname);
    }
    $("renew-open").onclick = openRenew;
    $("renew-cancel").onclick = closeRenew;
    $("renew-form").onsubmit = renew;
    // Back to the list as it was left (its filters are in the address the browser remembers).
    $("back").onclick = function (e) {
      var from = document.referrer ? new URL(document.referrer) : null;
      if (from && from.origin === window.location.origin && from.pathname === cfg.list && window.history.length > 1) {
        e.preventDefault();
        window.history.back();
      }
    };
    var results = await Promise.all([
      load(!!query.get("signed")),
      FD.api("GET", "/teams").then(function (d) { teams = d.items || []; }, function () { teams = []; }),
    ]);
    return results[0];
  }

  if (FD.signedIn) start();
})();
