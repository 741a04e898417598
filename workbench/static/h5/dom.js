/* Building and switching page content, shared by every H5 page (window.WorkbenchDom): `el` makes an element from
   attributes and children (strings become text; null, undefined and "" are skipped), `status` swaps the page's
   content (#app) for a loading or error line (#status) in the layout the pages share. Plain ES2017. */
(function () {
  "use strict";

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "onclick") node.onclick = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) {
      if (c !== null && c !== undefined && c !== "" && c !== false) {
        node.appendChild(typeof c === "object" ? c : document.createTextNode(c));
      }
    });
    return node;
  }

  function status(text, error, link) {
    var byId = function (id) { return document.getElementById(id); };
    byId("app").hidden = true;
    byId("status").hidden = false;
    byId("status").className = error ? "status error" : "status";
    byId("status").querySelector(".spin").hidden = !!error;
    byId("status-text").textContent = text;
    byId("status-link").hidden = !link;
  }

  window.WorkbenchDom = { el: el, status: status };
})();
