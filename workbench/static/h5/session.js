/* The signed-in session every H5 page shares: tokens in sessionStorage (gone when the webview closes), JSON calls
   with the access token, and one refresh at a time on a 401 `token_expired` (refresh tokens rotate: a second use
   of the same one would revoke the whole sign-in). Plain ES2017; sets window.WorkbenchSession. */
(function () {
  "use strict";

  var KEY = "wb.tokens";

  function tokens() {
    try { return JSON.parse(sessionStorage.getItem(KEY)); } catch (e) { return null; }
  }
  function saveTokens(t) { sessionStorage.setItem(KEY, JSON.stringify(t)); }
  function clearTokens() { sessionStorage.removeItem(KEY); }

  function ApiFailure(status, code, message, field, details) {
    // `field`: the request field a 4xx names (forms show the message next to it); `details`: all of them.
    this.status = status; this.code = code; this.message = message; this.field = field || null;
    this.details = details || null;
  }

  async function call(method, path, body, auth) {
    var headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    var t = tokens();
    if (auth && t) headers.Authorization = "Bearer " + t.access_token;
    var reply;
    try {
      reply = await fetch(path, {
        method: method, headers: headers, credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiFailure(0, "network", "网络异常，请检查网络后重试");
    }
    var data = null;
    try { data = await reply.json(); } catch (e) { /* empty or non-JSON body */ }
    if (!reply.ok) {
      var err = (data && data.error) || {};
      var fallback = reply.status >= 500 ? "服务暂时不可用，请稍后重试" : "请求失败（" + reply.status + "）";
      throw new ApiFailure(reply.status, err.code || "http_" + reply.status, err.message || fallback, err.field,
        err.details);
    }
    return data;
  }

  var refreshing = null;
  function refresh() {
    if (!refreshing) {
      var t = tokens();
      refreshing = (t && t.refresh_token
        ? call("POST", "/api/auth/refresh", { refresh_token: t.refresh_token }).then(saveTokens)
        : Promise.reject(new ApiFailure(401, "unauthorized", "登录已失效，请重新登录"))
      ).finally(function () { refreshing = null; });
    }
    return refreshing;
  }

  async function api(method, path, body) {
    try {
      return await call(method, path, body, true);
    } catch (e) {
      if (e.status !== 401 || e.code !== "token_expired") throw e;
      await refresh();
      return call(method, path, body, true);
    }
  }

  window.WorkbenchSession = {
    tokens: tokens, saveTokens: saveTokens, clearTokens: clearTokens, call: call, api: api, ApiFailure: ApiFailure,
  };
})();
