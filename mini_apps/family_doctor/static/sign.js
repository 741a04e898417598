/* 签约 (/h5/apps/family_doctor/sign): sign a resident to one of the caller's teams. The ID number gets a GB 11643
   checksum hint as it is typed; the server decides, and its error shows next to the field it names. */
(function () {
  "use strict";

  var FD = window.FamilyDoctor;
  var cfg = FD.cfg, $ = FD.$, el = FD.el;

  function idHint() {
    var result = FD.checkIdNumber($("id_number").value);
    $("id-hint").textContent = result ? result.text : "";
    $("id-hint").className = result && !result.ok ? "hint error" : "hint";
  }

  function body() {
    var value = function (id) { return $(id).value.trim(); };
    var data = {
      team_id: $("team_id").value ? Number($("team_id").value) : null,
      name: value("name"),
      id_number: value("id_number").toUpperCase(),
      phone: value("phone") || null,
      address: value("address"),
      tags: Array.prototype.map.call(document.querySelectorAll('#tags input:checked'), function (i) { return i.value; }),
      dingtalk_userid: value("dingtalk_userid") || null,
    };
    if (value("package")) data["package"] = value("package");
    if ($("start_date").value) data.start_date = $("start_date").value;
    if ($("end_date").value) data.end_date = $("end_date").value;
    return data;
  }

  async function submit(event) {
    event.preventDefault();
    var form = $("sign-form");
    FD.clearErrors(form);
    FD.notice("");
    $("sign-submit").disabled = true;
    try {
      var resident = await FD.api("POST", "/contracts", body());
    } catch (e) {
      $("sign-submit").disabled = false;
      FD.showErrors(form, e);
      return;
    }
    // The filled-in form leaves the history: back from the new resident's card is the list.
    window.location.replace(FD.residentUrl(resident.id) + "?signed=1");
  }

  async function start() {
    try {
      var teams = (await FD.api("GET", "/teams")).items || [];
    } catch (e) {
      return FD.failure(e);
    }
    teams = teams.filter(function (t) { return t.active !== false; });
    if (!teams.length) return FD.status("您还不在任何家庭医生团队中，请联系机构管理员", true, true);
    var select = $("team_id");
    if (teams.length > 1) select.appendChild(el("option", { value: "", text: "请选择团队" }));
    teams.forEach(function (t) { select.appendChild(el("option", { value: String(t.id), text: FD.teamLabel(t, teams) })); });
    var wanted = new URLSearchParams(window.location.search).get("team_id");
    select.value = teams.length === 1 ? String(teams[0].id) : wanted || "";
    if (select.selectedIndex < 0) select.value = ""; // a team_id from the address that is not (or no longer) theirs

    var box = $("tags");
    FD.TAG_CODES.forEach(function (code) {
      box.appendChild(el("label", {}, [el("input", { type: "checkbox", name: "tags", value: code }), FD.TAGS[code]]));
    });
    $("package").value = cfg["package"];
    $("start_date").value = FD.today();
    $("id_number").oninput = idHint;
    $("sign-form").onsubmit = submit;
    FD.ready();
    $("name").focus();
  }

  if (FD.signedIn) start();
})();
