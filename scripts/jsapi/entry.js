import * as dd from "dingtalk-jsapi";

// The shell looks for window.dd, as with DingTalk's CDN build (dingtalk.open.js).
window.dd = dd.default || dd;
