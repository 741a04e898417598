/* One referral (/h5/apps/referral/referrals/<id>): details (masked), the clinical summary and attachments when
   the API shares them with the caller, the timeline, and the actions the API says the caller may take now
   (`allowed_actions`): 接收 with a slot picker, 退回 and 撤销 with a reason, 到诊, 诊疗完毕, 结案 … A 409 shows
   its message (e.g. who accepted first) and the page reloads what is true now. Links to the form: 编辑草稿 for the
   applicant's draft, 转回基层 for the treating side of a completed up-referral (a down-referral following it). */
(function () {
  "use strict";

  var R = window.Referral;
  var cfg = R.cfg, $ = R.$, el = R.el;
  var ACTIONS = {};
  cfg.actions.forEach(function (a) { ACTIONS[a[0]] = { label: a[1], reason: a[2] }; });
  var CLINICAL = cfg.clinical.concat(cfg.downClinical);
  var referral = null;

  function pair(dl, label, value) {
    if (value === null || value === undefined || value === "") return;
    dl.append(el("dt", { text: label }), el("dd", { text: String(value) }));
  }

  function details(r) {
    $("referral-no").textContent = r.referral_no;
    $("state").replaceChildren(R.stateBadge(r.state, r.state_name));
    $("priority").replaceChildren(R.priorityBadge(r.priority, r.priority_name) || "");
    var dl = $("details");
    dl.textContent = "";
    var p = r.patient || {};
    pair(dl, "患者", [p.name, p.sex === "M" ? "男" : p.sex === "F" ? "女" : "", p.age != null ? p.age + "岁" : ""].filter(Boolean).join(" "));
    pair(dl, "身份证号", p.id_number);
    pair(dl, "联系电话", p.phone);
    pair(dl, "方向 / 方式", (r.direction_name || "") + " · " + (r.mode_name || ""));
    pair(dl, "申请方", [r.applicant_institution_name, r.applicant_department_name].filter(Boolean).join(" · "));
    pair(dl, "接收方", [r.target_institution_name, r.target_department_name].filter(Boolean).join(" · "));
    pair(dl, "转诊原因", r.reason_name + (r.reason_text ? "：" + r.reason_text : ""));
    var d = r.primary_diagnosis || {};
    pair(dl, "主要诊断", (d.code || "") + " " + (d.name || ""));
    pair(dl, "其他诊断", (r.secondary_diagnoses || []).map(function (s) { return s.code + " " + s.name; }).join("；"));
    pair(dl, "知情同意", r.consent ? "已同意" + (r.consent_at ? "（" + R.when(r.consent_at) + "）" : "") : "未确认");
    pair(dl, "接收时限", R.when(r.respond_by));
    if (r.slot) pair(dl, "预约", r.slot.day + " " + (r.slot.half_day_name || r.slot.half_day));
    pair(dl, "提交时间", R.when(r.submitted_at));
  }

  function clinical(r) {
    $("clinical-card").hidden = !r.clinical;
    var dl = $("clinical");
    dl.textContent = "";
    if (!r.clinical) return;
    CLINICAL.forEach(function (p) { pair(dl, p[1], r.clinical[p[0]]); });
    if (!dl.children.length) dl.appendChild(el("dd", { class: "hint", text: "未填写" }));
  }

  function attachments(r) {
    $("attachments-card").hidden = !r.attachments;
    var list = $("attachments");
    list.textContent = "";
    if (!r.attachments) return;
    r.attachments.forEach(function (a) {
      var open = el("button", { type: "button", class: "btn plain", text: "下载" });
      open.onclick = function () { download(a); };
      list.appendChild(el("li", { "data-id": String(a.id) }, [
        el("span", { class: "badge", text: a.kind_name || a.kind }),
        el("span", { class: "grow", text: a.filename + "（" + Math.ceil(a.size / 1024) + " KB）" }),
        open,
      ]));
    });
    if (!r.attachments.length) list.appendChild(el("li", { class: "hint", text: "暂无附件" }));
    $("upload-form").hidden = (r.sides || []).indexOf("applicant") < 0;
  }

  async function download(a) {
    // The bytes need the bearer token, so fetch them and hand the browser a blob.
    var t = window.WorkbenchSession.tokens();
    try {
      var reply = await fetch(cfg.api + "/" + referral.id + "/attachments/" + a.id, {
        headers: { Authorization: "Bearer " + (t && t.access_token) }, credentials: "same-origin",
      });
      if (!reply.ok) throw new Error(String(reply.status));
      var url = URL.createObjectURL(await reply.blob());
      var link = el("a", { href: url, download: a.filename });
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
    } catch (e) {
      R.notice("下载失败，请稍后重试");
    }
  }

  async function slots(r) {
    var select = $("slot");
    R.options(select, [], "暂不预约（接收后再约）");
    if (!r.target_department_id) return;
    try {
      var found = await R.api("GET", "/slots?" + new URLSearchParams({ department_id: String(r.target_department_id) }));
    } catch (e) {
      return; // no slot picker: accepting without one still works
    }
    found.items.filter(function (s) { return s.free > 0; }).forEach(function (s) {
      var half = (cfg.halfDays.filter(function (h) { return h[0] === s.half_day; })[0] || [0, s.half_day])[1];
      select.appendChild(el("option", { value: s.day + "|" + s.half_day, text: s.day + " " + half + "（余 " + s.free + "）" }));
    });
  }

  function actions(r) {
    var allowed = r.allowed_actions || [];
    $("actions-card").hidden = !allowed.length;
    var box = $("actions");
    box.textContent = "";
    var wantsSlot = allowed.indexOf("accept") >= 0 || allowed.indexOf("schedule") >= 0;
    $("slot-field").hidden = !wantsSlot;
    if (wantsSlot) slots(r);
    allowed.forEach(function (action) {
      var known = ACTIONS[action] || { label: action, reason: false };
      var danger = action === "reject" || action === "cancel";
      var b = el("button", { type: "button", class: danger ? "btn danger" : "btn", "data-action": action, text: known.label });
      b.onclick = function () { act(action, known); };
      box.appendChild(b);
    });
  }

  function links(r) {
    var sides = r.sides || [];
    var box = $("links");
    box.textContent = "";
    if (r.state === "draft" && sides.indexOf("applicant") >= 0) {
      box.appendChild(el("a", { class: "btn", id: "edit-draft", href: cfg.create + "?id=" + r.id, text: "编辑草稿" }));
    }
    // The API decides whether the down-referral may follow (422 on parent_id otherwise); offered where it will.
    if (r.direction !== "down" && cfg.downFrom.indexOf(r.state) >= 0 && sides.indexOf("receiver") >= 0) {
      box.appendChild(el("a", { class: "btn", id: "refer-down", href: cfg.create + "?parent=" + r.id, text: "转回基层" }));
    }
    $("links-card").hidden = !box.children.length;
  }

  async function act(action, known) {
    var form = $("action-form");
    R.clearErrors(form);
    R.notice("");
    var reason = $("reason").value.trim();
    if (known.reason && !reason) {
      return R.showErrors(form, { field: "reason", message: "请填写" + known.label + "原因" });
    }
    var body = { reason: reason };
    if ((action === "accept" || action === "schedule") && $("slot").value) {
      var parts = $("slot").value.split("|");
      body.slot = { day: parts[0], half_day: parts[1] };
    }
    form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    try {
      await R.api("POST", "/" + referral.id + "/actions/" + action, body);
    } catch (e) {
      form.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
      if (e.status === 409) {
        await load();
        return R.notice(e.message);
      }
      return R.showErrors(form, e);
    }
    $("reason").value = "";
    await load();
    R.notice("已" + known.label, true);
  }

  function timeline(events) {
    var list = $("timeline");
    list.textContent = "";
    events.forEach(function (ev) {
      list.appendChild(el("li", { "data-action": ev.action }, [
        el("time", { text: R.when(ev.at) }),
        el("span", {}, [
          el("b", { text: ev.action_name || ev.action }),
          " → " + (ev.to_state_name || ev.to_state),
          ev.member_name ? " · " + ev.member_name : ev.actor === "system" ? " · 系统" : "",
        ]),
        ev.reason ? el("div", { class: "hint", text: "原因：" + ev.reason }) : null,
      ]));
    });
    if (!events.length) list.appendChild(el("li", { class: "hint", text: "尚无记录（草稿）" }));
  }

  async function upload(event) {
    event.preventDefault();
    var form = $("upload-form");
    R.clearErrors(form);
    var files = $("file").files;
    if (!files || !files.length) return R.showErrors(form, { field: "file", message: "请选择文件" });
    var data = new FormData();
    data.append("kind", $("kind").value);
    data.append("file", files[0]);
    $("upload").disabled = true;
    try {
      await R.upload("/" + referral.id + "/attachments", data);
    } catch (e) {
      $("upload").disabled = false;
      return R.showErrors(form, e);
    }
    $("upload").disabled = false;
    $("file").value = "";
    await load();
    R.notice("附件已上传", true);
  }

  async function load() {
    try {
      var got = await Promise.all([
        R.api("GET", "/" + cfg.referralId),
        R.api("GET", "/" + cfg.referralId + "/events"),
      ]);
    } catch (e) {
      return R.failure(e);
    }
    referral = got[0];
    details(referral);
    clinical(referral);
    attachments(referral);
    actions(referral);
    links(referral);
    timeline(got[1].items || []);
    R.ready();
  }

  function start() {
    R.options($("kind"), cfg.attachmentKinds);
    $("upload-form").onsubmit = upload;
    var q = new URLSearchParams(window.location.search);
    load().then(function () {
      if (q.get("created")) R.notice("转诊已保存", true);
      if (q.get("upload_failed")) R.notice("转诊已保存，但有 " + q.get("upload_failed") + " 个附件上传失败，请重新上传");
    });
  }

  if (R.signedIn) start();
})();
