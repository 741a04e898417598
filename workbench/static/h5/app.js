/* The workbench H5 shell: sign in (DingTalk free-login, PC OAuth2, or the sandbox picker), then the member's apps.
   Plain ES2017, no framework, no build step. Tokens and API calls: session.js. */
(function () {
  "use strict";

  var cfg = JSON.parse(document.getElementById("wb-config").textContent);
  var inDingTalk = /DingTalk/i.test(navigator.userAgent);
  var $ = function (id) { return document.getElementById(id); };
  var LEVEL_NAMES = {};
  cfg.levels.forEach(function (l) { LEVEL_NAMES[l.code] = l.name; });

  // --- tokens and API --------------------------------------------------------------------------------------

  var session = window.WorkbenchSession;
  var tokens = session.tokens, saveTokens = session.saveTokens, clearTokens = session.clearTokens;
  var call = session.call, api = session.api;
  var NEXT_KEY = "wb.next";
  var signedInAgain = false;

  // --- views ------------------------------------------------------------------------------------------------

  function show(id) {
    ["status", "picker", "pc-login", "home"].forEach(function (v) { $(v).hidden = v !== id; });
    $("logout").hidden = id !== "home";
  }

  function loading(text) {
    show("status");
    $("status").className = "status";
    $("status").querySelector(".spin").hidden = false;
    $("status-text").textContent = text;
    $("retry").hidden = true;
  }

  function failed(text, retry, label) {
    show("status");
    $("status").className = "status error";
    $("status").querySelector(".spin").hidden = true;
    $("status-text").textContent = text;
    $("retry").hidden = !retry;
    $("retry").textContent = label || "重试";
    $("retry").onclick = retry || null;
  }

  var el = window.WorkbenchDom.el;

  var PALETTE = ["#1677ff", "#00b578", "#ff8f1f", "#7265e6", "#eb2f96", "#13a8a8", "#fa541c", "#2f54eb"];
  function tileColor(text) {
    var h = 0;
    for (var i = 0; i < text.length; i++) h = (h * 31 + text.charCodeAt(i)) >>> 0;
    return PALETTE[h % PALETTE.length];
  }

  function letterTile(name) {
    var tile = el("span", { class: "tile", "aria-hidden": "true", text: (name || "?").trim().charAt(0) });
    tile.style.background = tileColor(name || "?");
    return tile;
  }

  function iconTile(app) {
    // An icon is a URL, or the name of one of the shell's own icons (static/h5/icons/NAME.svg); else a letter.
    var icon = app.icon || "";
    if (/^[a-z0-9][a-z0-9_-]*$/.test(icon)) icon = cfg.icons + icon + ".svg";
    if (!/^(https?:\/\/|\/|data:image\/)/.test(icon)) return letterTile(app.name);
    var tile = el("span", { class: "tile", "aria-hidden": "true" });
    var img = el("img", { src: icon, alt: "", loading: "lazy" });
    img.onerror = function () { tile.replaceWith(letterTile(app.name)); };
    tile.appendChild(img);
    return tile;
  }

  function openApp(app) {
    if (inDingTalk && window.dd && dd.biz && dd.biz.util && dd.biz.util.openLink && /^https?:/.test(app.entry_url)) {
      dd.biz.util.openLink({ url: app.entry_url });
    } else {
      window.location.href = app.entry_url;
    }
  }

  function renderHome(me, catalog) {
    var member = me.member || {};
    var pos = (me.positions || [])[0] || {};
    $("avatar").textContent = (member.name || "?").charAt(0);
    $("member-name").textContent = member.name || "";
    var unit = [pos.unit_name, pos.name !== pos.unit_name ? pos.name : null, member.title].filter(Boolean);
    $("member-unit").textContent = unit.join(" · ");

    var box = $("groups");
    box.textContent = "";
    var count = 0;
    (catalog.groups || []).forEach(function (group) {
      var apps = group.apps || [];
      if (!apps.length) return;
      count += apps.length;
      var list = el("ul", { class: "apps" }, apps.map(function (app) {
        var button = el("button", { type: "button", class: "app", title: app.description || app.name,
          "data-code": app.code, onclick: function () { openApp(app); } },
          [iconTile(app), el("span", { class: "app-name", text: app.name })]);
        return el("li", {}, [button]);
      }));
      box.appendChild(el("section", { class: "card group", "data-group": group.code },
        [el("h2", { text: group.name }), list]));
    });
    $("no-apps").hidden = count > 0;
    show("home");
  }

  async function home() {
    loading("正在加载工作台…");
    try {
      var results = await Promise.all([api("GET", "/api/me"), api("GET", "/api/workbench/apps")]);
      renderHome(results[0], results[1]);
    } catch (e) {
      if (e.status === 401 && !signedInAgain) {
        // Once per page: a fresh sign-in (automatic inside DingTalk) must not loop if the server keeps refusing.
        signedInAgain = true;
        clearTokens();
        return signIn("登录已失效，请重新登录");
      }
      if (e.status === 401) clearTokens();
      failed(e.code === "network" ? e.message : "加载工作台失败：" + e.message,
        e.status === 401 ? function () { signIn(); } : home);
    }
  }

  async function exchange(path, body) {
    loading("正在登录…");
    try {
      saveTokens(await call("POST", path, body));
    } catch (e) {
      failed(e.code === "network" ? e.message : "登录失败：" + e.message, function () { signIn(); });
      return;
    }
    // Back to the page that sent the member here to sign in (e.g. /h5/admin/outbox), else the workbench.
    var next = sessionStorage.getItem(NEXT_KEY);
    sessionStorage.removeItem(NEXT_KEY);
    if (next) return window.location.replace(next);
    return home();
  }

  // --- sign-in ----------------------------------------------------------------------------------------------

  function loadScript(src) {
    return new Promise(function (resolve, reject) {
      var s = document.createElement("script");
      s.src = src;
      s.onload = resolve;
      s.onerror = function () { reject(new Error("钉钉 JSAPI 加载失败")); };
      document.head.appendChild(s);
    });
  }

  function requestAuthCode() {
    // dd.requestAuthCode (union API: DingTalk 7.0.45+ on phones, 7.0.50+ on PC); older clients only have
    // dd.runtime.permission.requestAuthCode, tried when the first is missing or refused.
    function ask(fn, options) {
      return new Promise(function (resolve, reject) {
        var done = function (r) { r && r.code ? resolve(r.code) : reject(new Error("未取得免登授权码")); };
        var fail = function (e) { reject(new Error((e && (e.errorMessage || e.message)) || "免登授权失败")); };
        var opts = Object.assign({ onSuccess: done, onFail: fail }, options);
        try {
          var promise = fn(opts);
          if (promise && typeof promise.then === "function") promise.then(done, fail);
        } catch (e) {
          fail(e);
        }
      });
    }
    return new Promise(function (resolve, reject) {
      if (dd.error) dd.error(function (e) { reject(new Error((e && e.errorMessage) || "钉钉 JSAPI 初始化失败")); });
      dd.ready(function () {
        var legacy = function () { return ask(dd.runtime.permission.requestAuthCode, { corpId: cfg.corpId }); };
        var first = typeof dd.requestAuthCode === "function"
          ? ask(dd.requestAuthCode, { corpId: cfg.corpId, clientId: cfg.clientId })
          : legacy();
        first.catch(function (e) {
          if (typeof dd.requestAuthCode !== "function" || !(dd.runtime && dd.runtime.permission)) throw e;
          return legacy();
        }).then(resolve, reject);
      });
    });
  }

  async function dingTalkSignIn() {
    loading("正在钉钉免登…");
    try {
      if (!cfg.jsapi) throw new Error("钉钉 JSAPI 未部署");
      if (!window.dd) await loadScript(cfg.jsapi);
      var code = await requestAuthCode();
    } catch (e) {
      failed("钉钉免登失败：" + e.message, function () { signIn(); });
      return;
    }
    return exchange("/api/auth/dingtalk", { code: code });
  }

  function signIn(notice) {
    if (inDingTalk) return dingTalkSignIn();
    if (cfg.sandbox) return picker(notice);
    show("pc-login");
  }

  // --- the sandbox picker -----------------------------------------------------------------------------------

  var oauthState = null; // set when we came from /api/auth/oauth/start (sandbox): sign in through the OAuth route
  var searchTimer = null;
  var searchSeq = 0;

  function describe(person) {
    return (person.positions || []).map(function (p) {
      var where = p.unit_name && p.unit_name !== p.name ? p.unit_name + " · " + p.name : p.name;
      return where + (LEVEL_NAMES[p.level] ? "（" + LEVEL_NAMES[p.level] + "）" : "");
    }).join("；");
  }

  async function search() {
    var seq = ++searchSeq;
    var params = new URLSearchParams({ q: $("q").value.trim(), level: $("level").value, limit: "20" });
    var list = $("people");
    try {
      var data = await call("GET", "/api/auth/sandbox/members?" + params.toString());
    } catch (e) {
      if (seq !== searchSeq) return;
      list.textContent = "";
      $("people-empty").hidden = false;
      $("people-empty").textContent = e.code === "network" ? e.message : "查询人员失败：" + e.message;
      return;
    }
    if (seq !== searchSeq) return; // a newer search is under way
    list.textContent = "";
    (data.items || []).forEach(function (person) {
      var label = [el("b", { text: person.name }), document.createTextNode(person.title ? " " + person.title : ""),
        el("small", { text: describe(person) })];
      list.appendChild(el("li", {}, [el("button", { type: "button", class: "person", "data-userid": person.userid,
        onclick: function () { pickMember(person.userid); } }, label)]));
    });
    $("people-empty").textContent = "没有找到匹配的人员";
    $("people-empty").hidden = (data.items || []).length > 0;
  }

  async function pickMember(userid) {
    loading("正在登录…");
    var kind = oauthState ? "oauth" : "h5";
    try {
      var minted = await call("POST", "/api/auth/sandbox/code", { userid: userid, kind: kind });
    } catch (e) {
      failed(e.code === "network" ? e.message : "登录失败：" + e.message, function () { picker(); });
      return;
    }
    if (oauthState) return exchange("/api/auth/oauth", { code: minted.code, state: oauthState });
    return exchange("/api/auth/dingtalk", { code: minted.code });
  }

  function picker(notice) {
    var select = $("level");
    if (select.options.length === 1) {
      cfg.levels.forEach(function (l) { select.appendChild(el("option", { value: l.code, text: l.name })); });
      $("q").oninput = function () { clearTimeout(searchTimer); searchTimer = setTimeout(search, 250); };
      select.onchange = search;
      $("search").onsubmit = function (e) { e.preventDefault(); search(); };
    }
    show("picker");
    $("notice").textContent = notice || "";
    $("notice").hidden = !notice;
    search();
  }

  // --- start ------------------------------------------------------------------------------------------------

  $("logout").onclick = async function () {
    var t = tokens();
    clearTokens();
    if (t && t.refresh_token) {
      try { await call("POST", "/api/auth/logout", { refresh_token: t.refresh_token }); } catch (e) { /* gone anyway */ }
    }
    if (inDingTalk) failed("已退出登录", function () { signIn(); }, "重新登录");
    else signIn();
  };

  var query = new URLSearchParams(window.location.search);
  // Only this site's own pages: a `next` elsewhere would make the sign-in an open redirect.
  if (/^\/h5\/[^\/\\]/.test(query.get("next") || "")) sessionStorage.setItem(NEXT_KEY, query.get("next"));
  if (query.get("state")) oauthState = query.get("state");
  var authCode = query.get("authCode") || query.get("code");
  if (authCode || query.get("login")) window.history.replaceState(null, "", window.location.pathname);

  if (authCode && oauthState) {
    exchange("/api/auth/oauth", { code: authCode, state: oauthState });
  } else if (tokens()) {
    home();
  } else {
    signIn();
  }
})();
