/* 我的签约居民 (/h5/apps/family_doctor/): the residents of the caller's teams — team picker for members of several
   teams, key-population filter, chips with counts (随访逾期, 即将到期, states), paging. The filters live in the
   address (`?team_id=&tag=&filter=&page=`), so coming back from a resident's card finds the same list. */
(function () {
  "use strict";

  var FD = window.FamilyDoctor;
  var cfg = FD.cfg, $ = FD.$, el = FD.el;
  var PAGE_SIZE = 20;
  // The chips: 全部, 随访逾期, then shown contract states (each with its count from the list's `counts`).
  var CHIPS = [["", "全部"], ["overdue", "随访逾期"], ["expiring", "即将到期"], ["active", "有效"],
    ["expired", "已过期"], ["terminated", "已解约"]];

  var query = new URLSearchParams(window.location.search);
  var state = {
    team: query.get("team_id") || sessionStorage.getItem("fd.team") || "",
    tag: query.get("tag") || "",
    filter: query.get("filter") || "",
    page: Math.max(1, Number(query.get("page")) || 1),
  };
  var teams = [];
  var seq = 0;

  function remember() {
    var params = new URLSearchParams();
    if (state.team) params.set("team_id", state.team);
    if (state.tag) params.set("tag", state.tag);
    if (state.filter) params.set("filter", state.filter);
    if (state.page > 1) params.set("page", state.page);
    var search = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (search ? "?" + search : ""));
    if (state.team) sessionStorage.setItem("fd.team", state.team);
    else sessionStorage.removeItem("fd.team");
    $("sign-link").href = cfg.sign + (state.team ? "?team_id=" + encodeURIComponent(state.team) : "");
  }

  function renderCounts(counts) {
    var box = $("counts");
    box.textContent = "";
    var states = counts.states || {};
    CHIPS.forEach(function (chip) {
      var code = chip[0];
      var n = code === "" ? counts.all : code === "overdue" ? counts.overdue_follow_up : states[code] || 0;
      if (code && code !== state.filter && !n && code !== "overdue" && code !== "expiring") return; // empty states
      box.appendChild(el("button", { type: "button", class: "count " + code, "data-filter": code,
        "aria-pressed": String(state.filter === code),
        onclick: function () { state.filter = code; state.page = 1; load(); } },
      [chip[1], el("b", { text: String(n || 0) })]));
    });
  }

  function row(r) {
    var c = r.contract || {};
    var who = [FD.SEXES[r.sex], r.age != null ? r.age + "岁" : ""].filter(Boolean).join(" · ");
    var ids = [r.id_number, r.phone].filter(Boolean).join(" · ");
    var where = [];
    if (!state.team && teams.length > 1) where.push(c.team_name);
    if (c.end_date) where.push("到期 " + c.end_date);
    return el("li", { "data-id": String(r.id), "data-state": c.state || "" }, [
      el("a", { class: "person", href: FD.residentUrl(r.id) }, [
        el("div", { class: "line" }, [el("b", { class: "name", text: r.name }), el("small", { text: who }),
          c.state ? FD.stateBadge(c.state) : null,
          r.overdue_follow_up ? el("span", { class: "badge overdue", text: "随访逾期" }) : null]),
        el("div", { class: "ids", text: ids }),
        r.tags && r.tags.length ? el("div", { class: "line" }, [FD.tagChips(r.tags)]) : null,
        where.length ? el("small", { text: where.join(" · ") }) : null,
      ]),
    ]);
  }

  function pager(data) {
    var box = $("pager");
    box.textContent = "";
    var pages = Math.max(1, Math.ceil(data.total / data.per_page));
    if (pages <= 1) return;
    var go = function (p) { return function () { state.page = p; load(); window.scrollTo(0, 0); }; };
    var prev = el("button", { type: "button", class: "btn plain", id: "prev", text: "上一页", onclick: go(data.page - 1) });
    var next = el("button", { type: "button", class: "btn plain", id: "next", text: "下一页", onclick: go(data.page + 1) });
    prev.disabled = data.page <= 1;
    next.disabled = data.page >= pages;
    box.appendChild(prev);
    box.appendChild(el("span", { id: "page-of", text: "第 " + data.page + " / " + pages + " 页" }));
    box.appendChild(next);
  }

  async function load() {
    var mine = ++seq;
    remember();
    $("f-team").value = state.team;
    $("f-tag").value = state.tag;
    var params = new URLSearchParams({ page: state.page, per_page: PAGE_SIZE });
    if (state.team) params.set("team_id", state.team);
    if (state.tag) params.set("tag", state.tag);
    if (state.filter === "overdue") params.set("overdue_follow_up", "true");
    else if (state.filter) params.set("state", state.filter);
    try {
      var data = await FD.api("GET", "/residents?" + params);
    } catch (e) {
      if (mine === seq) FD.failure(e);
      return;
    }
    if (mine !== seq) return; // a newer filter is under way
    if (!data.items.length && state.page > 1 && data.total) { state.page = 1; return load(); }
    FD.notice("");
    renderCounts(data.counts || { all: data.total, states: {}, overdue_follow_up: 0 });
    var list = $("people");
    list.textContent = "";
    data.items.forEach(function (r) { list.appendChild(row(r)); });
    $("empty").hidden = data.items.length > 0;
    $("total").textContent = "共 " + data.total + " 人";
    pager(data);
    FD.ready();
  }

  async function start() {
    try {
      teams = (await FD.api("GET", "/teams")).items || [];
    } catch (e) {
      return FD.failure(e);
    }
    if (!teams.length) return FD.status("您还不在任何家庭医生团队中，请联系机构管理员", true, false);
    var ids = teams.map(function (t) { return String(t.id); });
    if (teams.length === 1 || ids.indexOf(state.team) < 0) state.team = teams.length === 1 ? ids[0] : "";
    var select = $("f-team");
    teams.forEach(function (t) { select.appendChild(el("option", { value: String(t.id), text: FD.teamLabel(t, teams) })); });
    select.hidden = teams.length < 2;
    $("team-name").hidden = teams.length > 1;
    $("team-name").textContent = teams.length === 1 ? FD.teamLabel(teams[0], teams) : "";
    select.onchange = function () { state.team = this.value; state.page = 1; load(); };
    FD.TAG_CODES.forEach(function (code) { $("f-tag").appendChild(el("option", { value: code, text: FD.TAGS[code] })); });
    $("f-tag").onchange = function () { state.tag = this.value; state.page = 1; load(); };
    if (state.tag && !FD.TAGS[state.tag]) state.tag = "";
    if (!CHIPS.some(function (c) { return c[0] === state.filter; })) state.filter = "";
    return load();
  }

  // Back from a resident's card the browser may show this page from its cache: the list may have changed since.
  window.addEventListener("pageshow", function (e) { if (e.persisted && teams.length) load(); });

  if (FD.signedIn) start();
})();
