/* 我的绩效分配 (/h5/apps/compensation/my-shares): the signed-in member's own shares of confirmed internal
   distributions, newest first — period and kind, institution, amount, 个人当量, 系数, 点数 and how the amount was
   reached (the API's `how`: 平均部分 + 点数 × 点值 = the exact amount → the cents). The confirmation's work notice links here, so it asks for no
   role: the API returns only the caller's own rows. */
(function () {
  "use strict";

  var C = window.Comp;
  var $ = C.$, el = C.el;

  function cell(key, label, value) {
    return el("td", { class: "num", "data-key": key, "data-label": label, "data-value": value }, [C.grouped(value)]);
  }

  async function load() {
    var reply;
    try {
      reply = await C.api("GET", "/my-shares");
    } catch (e) {
      return C.failure(e);
    }
    var items = reply.items || [];
    var body = $("my-shares").querySelector("tbody");
    body.textContent = "";
    items.forEach(function (s) {
      body.appendChild(el("tr", { "data-distribution": String(s.distribution_id) }, [
        el("td", { class: "name", "data-key": "period" }, [s.period + (s.kind && C.KINDS[s.kind] ? " " + C.KINDS[s.kind] : "")]),
        el("td", { "data-key": "institution", "data-label": "机构" }, [s.institution_name || ""]),
        cell("amount", "金额（元）", s.amount),
        cell("equivalents", "个人当量", s.equivalents),
        cell("coefficient", "系数", s.coefficient),
        cell("points", "点数", s.points),
        el("td", { "data-key": "how", "data-label": "计算过程" }, [
          el("span", { class: "how", text: s.how || "" }),
        ]),
      ]));
    });
    $("my-shares-empty").hidden = items.length > 0;
    C.ready();
  }

  if (C.signedIn) load();
})();
