/* One manual report (/h5/apps/supervision/reports/<id>): its unit, period, items, approval state (待审批, 已计入,
   已退回 with the reason) and evidence. While it is pending the submitter uploads evidence to an item (PDF, PNG,
   JPEG): qualitative items need at least one document, approvers decide on them and an agreement without one
   does not count. Right after submitting (`?created=1`) the page says so. */
(function () {
  "use strict";

  var S = window.Sup;
  var cfg = S.cfg, $ = S.$, el = S.el;
  var dom = window.WorkbenchDom;
  var session = window.WorkbenchSession;
  var APPROVAL = {
    pending: "审批中（钉钉卡片）", started: "审批中（钉钉卡片）", approved: "已同意", refused: "已拒绝",
    terminated: "已撤销", failed: "发起失败",
  };
  var actor = null; // the signed-in person as the API names submitters

  async function upload(reportId, code, file) {
    // Multipart with the bearer token: the shell's JSON call cannot send a file.
    async function once() {
      var form = new FormData();
      form.append("indicator", code);
      form.append("file", file, file.name);
      var t = session.tokens();
      var reply;
      try {
        reply = await fetch(cfg.api + "/reports/" + reportId + "/evidence", {
          method: "POST", body: form, credentials: "same-origin",
          headers: { Accept: "application/json", Authorization: "Bearer " + (t && t.access_token) },
        });
      } catch (e) {
        throw new session.ApiFailure(0, "network", "网络异常，请检查网络后重试");
      }
      var data = null;
      try { data = await reply.json(); } catch (e) { /* not JSON */ }
      if (reply.ok) return data;
      var err = (data && data.error) || {};
      throw new session.ApiFailure(reply.status, err.code || "http_" + reply.status, err.message || "上传失败（" + reply.status + "）", err.field || "file", err.details);
    }
    try {
      return await once();
    } catch (e) {
      if (e.status !== 401) throw e;
      if (e.code !== "token_expired") return dom.signIn(cfg.shell);
      await session.api("GET", "/api/me"); // refreshes the token once
      return once();
    }
  }

  function size(bytes) {
    return bytes >= 1048576 ? (bytes / 1048576).toFixed(1) + " MB" : Math.max(1, Math.round(bytes / 1024)) + " KB";
  }

  function figures(item) {
    if (item.kind === "qualitative") return (item.numerator === 1 ? "达标" : "未达标") + (item.verdict ? "：" + item.verdict : "");
    if (item.denominator === null || item.denominator === undefined) return "数值 " + S.number(item.numerator);
    return "分子 " + S.number(item.numerator) + " / 分母 " + S.number(item.denominator);
  }

  function uploader(report, item) {
    var id = "file-" + item.indicator;
    var input = el("input", { type: "file", id: id, name: "file", accept: cfg.evidence_types.join(",") });
    var button = el("button", { type: "button", class: "btn plain", text: "上传" });
    var form = el("form", { class: "upload", novalidate: "" }, [
      el("label", { for: id, class: "hint", text: "佐证材料" }), input, button,
      el("p", { class: "field-error", "data-error-for": "file" }), el("p", { class: "field-error", "data-error-for": "indicator" }),
      el("p", { class: "form-error", hidden: "" }),
    ]);
    button.onclick = async function () {
      dom.clearErrors(form);
      var file = input.files && input.files[0];
      if (!file) return dom.showErrors(form, { message: "请选择文件", field: "file" });
      if (file.size > cfg.evidence_max) return dom.showErrors(form, { message: "文件不能超过 20 MB", field: "file" });
      button.disabled = true;
      try {
        var saved = await upload(report.id, item.indicator, file);
        await load("已上传 " + saved.filename);
      } catch (e) {
        dom.showErrors(form, e);
        button.disabled = false;
      }
    };
    return form;
  }

  function render(report) {
    document.title = report.unit.name + " " + report.period + " · 指标填报";
    $("title").textContent = report.unit.name + " " + report.period;
    $("state").className = "state " + report.state;
    $("state").dataset.state = report.state;
    $("state").textContent = report.state_name || report.state;
    $("unit").textContent = report.unit.name;
    $("period").textContent = report.period;
    // "corp:userid" (how the audit log names people): the userid is what colleagues recognise.
    $("submitter").textContent = String(report.submitted_by).split(":").pop();
    $("received").textContent = new Date(report.received_at).toLocaleString("zh-CN", { hour12: false });
    var approval = report.approval;
    $("approvers").textContent = approval ? approval.approvers.join("、") : "—";
    $("approval").textContent = approval ? APPROVAL[approval.state] || approval.state : "—";
    $("reason").hidden = !report.decision_reason;
    $("reason").textContent = report.decision_reason ? "退回原因：" + report.decision_reason : "";
    var pending = report.state === "pending";
    var mine = pending && report.submitted_by === actor; // only the submitter may attach evidence
    $("missing").hidden = !(pending && report.evidence_missing.length);
    $("missing").textContent = "待上传佐证材料：" + report.evidence_missing.join("、") + "。审批人依据佐证材料审批，缺少佐证的定性指标即使审批同意也不计入。";
    var list = $("items");
    list.textContent = "";
    report.items.forEach(function (item) {
      var docs = report.evidence.filter(function (e) { return e.indicator === item.indicator; });
      var files = el("ul", { class: "evidence" }, docs.map(function (d) {
        var link = el("a", { href: "#", "data-evidence": String(d.id), text: d.filename });
        link.onclick = function (event) {
          event.preventDefault();
          S.download("/reports/" + report.id + "/evidence/" + d.id, {}, d.filename).catch(function (e) { S.notice(e.message); });
        };
        return el("li", {}, [link, " ", el("small", { text: size(d.size) })]);
      }));
      var needs = report.evidence_missing.indexOf(item.indicator) >= 0;
      list.appendChild(el("li", { "data-code": item.indicator }, [
        el("span", { class: "r-title", text: (item.name || item.indicator) }), el("small", { text: item.indicator }),
        el("span", { class: "figures", style: "flex-basis:100%", text: figures(item) }),
        needs ? el("span", { class: "need", text: "须上传佐证材料" }) : null,
        docs.length ? files : null,
        mine ? uploader(report, item) : null,
      ]));
    });
  }

  async function load(message) {
    try {
      if (actor === null) {
        var me = await session.api("GET", "/api/me");
        actor = me.operator ? "operator" : me.member.corp_id + ":" + me.member.userid;
      }
      var report = await S.api("/reports/" + cfg.report_id);
    } catch (e) {
      if (e.status === 401) return dom.signIn(cfg.shell);
      return S.failure(e);
    }
    render(report);
    if (message) S.notice(message, true);
    S.ready();
  }

  if (S.signedIn) {
    var created = new URLSearchParams(window.location.search).get("created");
    load(created ? "已提交，等待本单位管理员审批；审批同意后计入统计" : "");
  }
})();
