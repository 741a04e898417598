/* 转诊 (/h5/apps/referral/): my outbox (as applicant) and inbox (as receiver), counts by state as filter chips,
   direction and priority filters, paging. The filters live in the address, so back from a referral returns to
   the same view. A draft in the outbox opens back in the form, to edit and submit. */
(function () {
  "use strict";

  var R = window.Referral;
  var cfg = R.cfg, $ = R.$, el = R.el;
  var PER_PAGE = 20;

  function query() {
    var q = new URLSearchParams(window.location.search);
    return {
      box: q.get("box") === "inbox" ? "inbox" : "outbox",
      state: q.get("state") || "",
      direction: q.get("direction") || "",
      priority: q.get("priority") || "",
      page: Math.max(1, Number(q.get("page")) || 1),
    };
  }

  function go(changes) {
    var next = Object.assign(query(), changes);
    if (!("page" in changes)) next.page = 1;
    var q = new URLSearchParams();
    Object.keys(next).forEach(function (k) { if (next[k] && !(k === "page" && next[k] === 1)) q.set(k, next[k]); });
    window.history.replaceState(null, "", window.location.pathname + (q.toString() ? "?" + q : ""));
    load();
  }

  function row(item, box) {
    var other = box === "outbox"
      ? [item.target_institution_name, item.target_department_name].filter(Boolean).join(" · ")
      : [item.applicant_institution_name, item.applicant_department_name].filter(Boolean).join(" · ");
    var patient = item.patient || {};
    var diagnosis = item.primary_diagnosis || {};
    return el("li", { "data-id": String(item.id), class: item.priority === "green" ? "green" : "" }, [
      el("a", { class: "row", href: box === "outbox" && item.state === "draft" ? cfg.create + "?id=" + item.id : R.referralUrl(item.id) }, [
        el("span", { class: "line" }, [
          el("b", { text: patient.name || "" }),
          el("small", { text: [patient.sex === "M" ? "男" : patient.sex === "F" ? "女" : "", patient.age != null ? patient.age + "岁" : ""].filter(Boolean).join(" ") }),
          R.stateBadge(item.state, item.state_name),
          R.priorityBadge(item.priority, item.priority_name),
          el("span", { class: "badge", text: item.direction_name || R.DIRECTIONS[item.direction] }),
        ]),
        el("span", { class: "line" }, [el("span", { text: (diagnosis.code || "") + " " + (diagnosis.name || "") })]),
        el("span", { class: "line" }, [
          el("span", { class: "no", text: item.referral_no }),
          el("small", { text: (box === "outbox" ? "转至 " : "来自 ") + other }),
        ]),
      ]),
    ]);
  }

  function chips(counts, current) {
    var box = $("counts");
    box.textContent = "";
    var chip = function (state, label, n) {
      var b = el("button", { type: "button", class: "count", "data-filter": state, "aria-pressed": String(current === state) }, [label, el("b", { text: String(n || 0) })]);
      b.onclick = function () { go({ state: state }); };
      return b;
    };
    box.appendChild(chip("", "全部", counts.all));
    cfg.states.forEach(function (p) {
      var n = (counts.states || {})[p[0]];
      if (n || current === p[0]) box.appendChild(chip(p[0], p[1], n));
    });
  }

  function pager(data) {
    var box = $("pager");
    box.textContent = "";
    var pages = Math.max(1, Math.ceil(data.total / PER_PAGE));
    if (pages < 2) return;
    var prev = el("button", { type: "button", class: "btn plain", text: "上一页" });
    var next = el("button", { type: "button", class: "btn plain", text: "下一页" });
    prev.disabled = data.page <= 1;
    next.disabled = data.page >= pages;
    prev.onclick = function () { go({ page: data.page - 1 }); };
    next.onclick = function () { go({ page: data.page + 1 }); };
    box.append(prev, el("span", { text: data.page + " / " + pages }), next);
  }

  var loading = 0;
  async function load() {
    var q = query(), mine = ++loading;
    document.querySelectorAll(".tab").forEach(function (t) { t.setAttribute("aria-selected", String(t.dataset.box === q.box)); });
    $("f-direction").value = q.direction;
    $("f-priority").value = q.priority;
    var params = new URLSearchParams({ box: q.box, page: String(q.page), per_page: String(PER_PAGE) });
    ["state", "direction", "priority"].forEach(function (k) { if (q[k]) params.set(k, q[k]); });
    try {
      var data = await R.api("GET", "?" + params);
    } catch (e) {
      return R.failure(e);
    }
    if (mine !== loading) return; // a newer filter's answer is on its way
    R.notice("");
    chips(data.counts || { all: 0, states: {} }, q.state);
    $("referrals").textContent = "";
    data.items.forEach(function (item) { $("referrals").appendChild(row(item, q.box)); });
    $("empty").hidden = data.items.length > 0;
    $("total").textContent = "共 " + data.total + " 条";
    pager(data);
    R.ready();
  }

  function start() {
    R.options($("f-direction"), cfg.directions, "全部方向");
    R.options($("f-priority"), cfg.priorities, "全部优先级");
    $("f-direction").onchange = function () { go({ direction: this.value }); };
    $("f-priority").onchange = function () { go({ priority: this.value }); };
    document.querySelectorAll(".tab").forEach(function (t) {
      t.onclick = function () { go({ box: t.dataset.box, state: "" }); };
    });
    load();
  }

  if (R.signedIn) start();
})();
