/* 消息投递与审批 (/h5/admin/outbox): the outbox by state and channel, one message's detail and 重试, the approvals.
   For province administrators, in a PC browser or a phone. Plain ES2017, no framework, no build step. It signs
   nobody in: it uses the session the shell signed in (session.js). */
(function () {
  "use strict";

  var cfg = JSON.parse(document.getElementById("wb-config").textContent);
  var PAGE_SIZE = 20;
  var $ = function (id) { return document.getElementById(id); };

  var STATES = { queued: "排队中", sending: "发送中", sent: "已发送", failed: "失败", held: "暂缓（额度）" };
  var CHANNELS = { robot_webhook: "群机器人（Webhook）", robot_oto: "机器人单聊", robot_group: "机器人群消息",
    work_notice: "工作通知", card: "互动卡片" };
  var PRIORITIES = { low: "低", normal: "普通", high: "高" };
  var APPROVAL_STATES = { pending: "待发起", started: "审批中", approved: "已同意", refused: "已拒绝",
    terminated: "已终止", failed: "失败" };
  var RESULTS = { agree: "同意", refuse: "拒绝", terminated: "终止", failed: "失败" };
  var MODES = { any: "或签", all: "会签", sequence: "依次审批" };
  var APPROVAL_CHANNELS = { workflow: "OA 审批", card: "审批卡片" };
  var RETRYABLE = ["failed", "held"]; // what POST /outbox/<id>/retry accepts

  // --- tokens and API: the shell's session (session.js) ------------------------------------------------------

  var tokens = window.WorkbenchSession.tokens;
  function api(method, path, body) { return window.WorkbenchSession.api(method, cfg.api + path, body); }

  // --- helpers ----------------------------------------------------------------------------------------------

  var el = window.WorkbenchDom.el, status = window.WorkbenchDom.status;

  function pad(n) { return n < 10 ? "0" + n : "" + n; }
  function fmt(iso) {
    if (!iso) return "";
    var d = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : iso + "Z");
    if (isNaN(d)) return iso;
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function label(names, code) { return names[code] || code || ""; }
  function tag(names, code) { return el("span", { class: "tag " + (code || ""), text: label(names, code) }); }
  function td(name, content, cls) {
    var cell = el("td", name ? { "data-label": name } : {});
    if (cls) cell.className = cls;
    if (content && typeof content === "object") cell.appendChild(content);
    else cell.textContent = content == null ? "" : content;
    return cell;
  }
  function people(list) {
    list = list || [];
    if (!list.length) return "";
    return list.slice(0, 3).join("、") + (list.length > 3 ? " 等 " + list.length + " 人" : "");
  }
  function targetOf(m) { return m.target || people(m.recipients); }
  function fill(select, names, current) {
    Object.keys(names).forEach(function (code) {
      if (!select.querySelector('option[value="' + code + '"]')) {
        select.appendChild(el("option", { value: code, text: names[code] }));
      }
    });
    select.value = current || "";
  }

  function notice(text) { $("notice").textContent = text || ""; $("notice").hidden = !text; }

  function failure(e) {
    // The whole page stops for sign-in and permission; anything else is a notice above what was loaded.
    if (e.status === 401) {
      window.WorkbenchSession.clearTokens();
      return status("登录已失效，请回到工作台重新登录后再打开本页", true, true);
    }
    if (e.status === 403) return status("仅省级管理员可查看消息投递与审批", true, false);
    var text = e.code === "network" ? e.message : "加载失败：" + e.message;
    if ($("app").hidden) status(text, true, false);
    else notice(text);
  }

  function pager(box, data, go) {
    box.textContent = "";
    var pages = Math.max(1, Math.ceil(data.total / data.page_size));
    if (pages <= 1) return;
    box.appendChild(el("button", { type: "button", class: "btn plain", text: "上一页",
      onclick: function () { go(data.page - 1); } }));
    box.lastChild.disabled = data.page <= 1;
    box.appendChild(el("span", { text: "第 " + data.page + " / " + pages + " 页" }));
    box.appendChild(el("button", { type: "button", class: "btn plain", text: "下一页",
      onclick: function () { go(data.page + 1); } }));
    box.lastChild.disabled = data.page >= pages;
  }

  // --- the outbox -------------------------------------------------------------------------------------------

  var outboxQuery = { state: "", channel: "", page: 1 };

  async function loadCounts() {
    var c = await api("GET", "/outbox/counts");
    var box = $("counts");
    box.textContent = "";
    var states = c.states || {};
    var total = Object.keys(states).reduce(function (n, k) { return n + states[k]; }, 0);
    [""].concat(Object.keys(STATES), Object.keys(states).filter(function (k) { return !STATES[k]; }))
      .forEach(function (code) {
        var chip = el("button", { type: "button", class: "count " + code, "data-state": code,
          "aria-pressed": String(outboxQuery.state === code),
          onclick: function () { outboxQuery.state = code; outboxQuery.page = 1; loadOutbox(); } },
        [el("b", { text: String(code ? states[code] || 0 : total) }), el("span", { text: code ? label(STATES, code) : "全部" })]);
        box.appendChild(chip);
      });
    var quota = function (q) { return q ? q.used + " / " + q.quota + "（剩余 " + q.remaining + "）" : "—"; };
    $("quota").textContent = "本月" + (c.month ? "（" + c.month + "）" : "") + "钉钉额度：接口调用 " + quota(c.api) +
      "；机器人消息 " + quota(c.message);
  }

  function outboxRow(m) {
    var acts = el("td", { class: "acts" }, [el("a", { class: "btn plain", href: "#message/" + m.id, text: "详情" })]);
    if (RETRYABLE.indexOf(m.state) >= 0) {
      acts.appendChild(el("button", { type: "button", class: "btn retry", text: "重试",
        onclick: function (ev) { retry(m.id, ev.currentTarget); } }));
    }
    return el("tr", { "data-id": String(m.id), "data-state": m.state }, [
      td("时间", fmt(m.created_at), "nowrap"),
      td("渠道", label(CHANNELS, m.channel)),
      td("发送对象", targetOf(m)),
      td("状态", tag(STATES, m.state)),
      td("尝试", String(m.attempts)),
      td("最近错误", m.last_error || "", "err"),
      acts,
    ]);
  }

  async function loadOutbox() {
    notice("");
    $("f-state").value = outboxQuery.state;
    $("f-channel").value = outboxQuery.channel;
    var params = new URLSearchParams({ page: outboxQuery.page, page_size: PAGE_SIZE });
    if (outboxQuery.state) params.set("state", outboxQuery.state);
    if (outboxQuery.channel) params.set("channel", outboxQuery.channel);
    try {
      var results = await Promise.all([api("GET", "/outbox?" + params), loadCounts()]);
    } catch (e) {
      return failure(e);
    }
    var data = results[0];
    var body = $("outbox-rows");
    body.textContent = "";
    data.items.forEach(function (m) { body.appendChild(outboxRow(m)); });
    $("outbox-empty").hidden = data.items.length > 0;
    $("outbox-table").hidden = !data.items.length;
    $("outbox-total").textContent = "共 " + data.total + " 条";
    pager($("outbox-pager"), data, function (p) { outboxQuery.page = p; loadOutbox(); });
    ready();
  }

  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  async function retry(id, button) {
    button.disabled = true;
    button.textContent = "重试中…";
    notice("");
    try {
      var m = await api("POST", "/outbox/" + id + "/retry");
      // Queued again: follow it for a few seconds while the delivery job runs, then leave it as it stands.
      for (var i = 0; i < 10; i++) {
        showRow(m);
        if (m.state !== "queued" && m.state !== "sending") break;
        await sleep(1000);
        m = await api("GET", "/outbox/" + id);
      }
      showRow(m);
      await loadCounts();
    } catch (e) {
      button.disabled = false;
      button.textContent = "重试";
      failure(e);
    }
  }

  function showRow(m) {
    var row = document.querySelector('#outbox-rows tr[data-id="' + m.id + '"]');
    if (row) row.replaceWith(outboxRow(m));
    if (current.kind === "message" && current.id === m.id) renderMessage(m);
  }

  // --- the approvals ----------------------------------------------------------------------------------------

  var approvalQuery = { state: "", page: 1 };

  async function loadApprovals() {
    notice("");
    $("f-approval-state").value = approvalQuery.state;
    var params = new URLSearchParams({ page: approvalQuery.page, page_size: PAGE_SIZE });
    if (approvalQuery.state) params.set("state", approvalQuery.state);
    try {
      var data = await api("GET", "/approvals?" + params);
    } catch (e) {
      return failure(e);
    }
    var body = $("approval-rows");
    body.textContent = "";
    data.items.forEach(function (a) {
      body.appendChild(el("tr", { "data-id": String(a.id), "data-state": a.state }, [
        td("时间", fmt(a.created_at), "nowrap"),
        td("标题", a.title),
        td("状态", tag(APPROVAL_STATES, a.state)),
        td("结果", a.result ? tag(RESULTS, a.result) : "—"),
        td("审批人", people(a.approvers)),
        td("方式", label(MODES, a.mode) + " · " + label(APPROVAL_CHANNELS, a.channel)),
        el("td", { class: "acts" }, [el("a", { class: "btn plain", href: "#approval/" + a.id, text: "详情" })]),
      ]));
    });
    $("approval-empty").hidden = data.items.length > 0;
    $("approval-table").hidden = !data.items.length;
    $("approval-total").textContent = "共 " + data.total + " 条";
    pager($("approval-pager"), data, function (p) { approvalQuery.page = p; loadApprovals(); });
    ready();
  }

  // --- one message or approval ------------------------------------------------------------------------------

  function json(value) { return el("pre", { text: JSON.stringify(value, null, 2) }); }

  function detail(title, back, fields, actions) {
    var box = $("detail");
    box.textContent = "";
    box.appendChild(el("h2", {}, [el("span", { text: title })].concat(actions || [],
      [el("a", { class: "btn plain", href: back, text: "返回列表" })])));
    var dl = el("dl");
    fields.forEach(function (f) {
      if (f[1] === null || f[1] === undefined || f[1] === "" || (Array.isArray(f[1]) && !f[1].length)) return;
      dl.appendChild(el("dt", { text: f[0] }));
      dl.appendChild(el("dd", {}, [typeof f[1] === "object" && !f[1].nodeType ? json(f[1]) : f[1]]));
    });
    box.appendChild(dl);
  }

  function renderMessage(m) {
    var actions = RETRYABLE.indexOf(m.state) >= 0 ? [el("button", { type: "button", class: "btn retry", text: "重试",
      onclick: function (ev) { retry(m.id, ev.currentTarget); } })] : [];
    detail("消息 #" + m.id, "#outbox", [
      ["状态", tag(STATES, m.state)],
      ["渠道", label(CHANNELS, m.channel)],
      ["发送对象", m.target],
      ["接收人", people(m.recipients)],
      ["已送达", people(m.delivered)],
      ["优先级", label(PRIORITIES, m.priority)],
      ["尝试次数", String(m.attempts)],
      ["最近错误", m.last_error],
      ["创建时间", fmt(m.created_at)],
      ["更新时间", fmt(m.updated_at)],
      ["发送时间", fmt(m.sent_at)],
      ["幂等键", m.idempotency_key],
      ["processQueryKey", m.process_query_key],
      ["task_id", m.task_id],
      ["outTrackId", m.out_track_id],
      ["instanceId", m.instance_id],
      ["内容", m.payload],
      ["调用回执", m.receipts],
      ["发送结果", m.send_result],
    ], actions);
  }

  function renderApproval(a) {
    detail("审批 #" + a.id + " " + a.title, "#approvals", [
      ["状态", tag(APPROVAL_STATES, a.state)],
      ["结果", a.result ? tag(RESULTS, a.result) : null],
      ["审批人", (a.approvers || []).join("、")],
      ["方式", label(MODES, a.mode) + " · " + label(APPROVAL_CHANNELS, a.channel)],
      ["发起人", a.originator_userid],
      ["审批记录", (a.decisions || []).map(function (d) {
        return [d.userid, label(RESULTS, d.result), fmt(d.at), d.via].filter(Boolean).join(" ");
      }).join("；")],
      ["尝试次数", String(a.attempts)],
      ["最近错误", a.last_error],
      ["表单", a.form],
      ["创建时间", fmt(a.created_at)],
      ["发起时间", fmt(a.started_at)],
      ["完成时间", fmt(a.finished_at)],
      ["回调时间", fmt(a.callback_at)],
      ["回调", a.callback],
      ["instanceId", a.instance_id],
      ["流程编码", a.process_code],
      ["幂等键", a.idempotency_key],
    ]);
  }

  // --- views, by the address's hash: #outbox, #approvals, #message/<id>, #approval/<id> -----------------------

  var current = { kind: "outbox", id: null };

  function ready() { $("status").hidden = true; $("app").hidden = false; }

  function showView(section, tab) {
    ["outbox", "approvals", "detail"].forEach(function (v) { $(v).hidden = v !== section; });
    $("tab-outbox").setAttribute("aria-selected", String(tab === "outbox"));
    $("tab-approvals").setAttribute("aria-selected", String(tab === "approvals"));
  }

  async function route() {
    var m = /^#(message|approval)\/(\d+)$/.exec(window.location.hash);
    notice("");
    if (m) {
      current = { kind: m[1], id: Number(m[2]) };
      showView("detail", m[1] === "message" ? "outbox" : "approvals");
      $("detail").textContent = "正在加载…";
      try {
        var row = await api("GET", (m[1] === "message" ? "/outbox/" : "/approvals/") + m[2]);
      } catch (e) {
        $("detail").textContent = "";
        return failure(e);
      }
      (m[1] === "message" ? renderMessage : renderApproval)(row);
      return ready();
    }
    current = { kind: window.location.hash === "#approvals" ? "approvals" : "outbox", id: null };
    showView(current.kind, current.kind);
    return current.kind === "approvals" ? loadApprovals() : loadOutbox();
  }

  // --- start ------------------------------------------------------------------------------------------------

  fill($("f-state"), STATES);
  fill($("f-channel"), CHANNELS);
  fill($("f-approval-state"), APPROVAL_STATES);
  $("f-state").onchange = function () { outboxQuery.state = this.value; outboxQuery.page = 1; loadOutbox(); };
  $("f-channel").onchange = function () { outboxQuery.channel = this.value; outboxQuery.page = 1; loadOutbox(); };
  $("outbox-refresh").onclick = loadOutbox;
  $("f-approval-state").onchange = function () { approvalQuery.state = this.value; approvalQuery.page = 1; loadApprovals(); };
  $("approval-refresh").onclick = loadApprovals;
  $("outbox-filters").onsubmit = $("approval-filters").onsubmit = function (e) { e.preventDefault(); };
  window.addEventListener("hashchange", route);

  if (!tokens()) {
    status("请先在工作台登录，再打开本页", true, true);
  } else {
    status("正在加载…", false, false);
    route();
  }
})();
