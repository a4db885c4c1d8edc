/* core.js: the JSON API client, error display, formatting and DOM helpers shared by every page. */
(function () {
  "use strict";
  const MG = (window.MG = window.MG || {});
  MG.pages = MG.pages || {};

  /* ---------- the API client ---------- */

  class ApiError extends Error {
    constructor(status, error) {
      super((error && error.message) || `The server answered HTTP ${status}.`);
      this.status = status;
      this.type = error && error.type;
      this.param = error && error.param;
      this.code = error && error.code;
    }
  }
  MG.ApiError = ApiError;

  let csrfToken = null;
  const SESSION_GONE = new Set(["not_authenticated", "session_expired"]);
  MG.onPublicPage = () => {
    const main = document.querySelector("main[data-page]");
    return !main || (main.dataset.access || "public") === "public";
  };
  MG.setCsrf = (token) => { csrfToken = token || null; };

  // Every call goes to this origin; the session cookie rides along, the CSRF token is a header.
  MG.api = async function (method, path, body) {
    const headers = { Accept: "application/json" };
    const init = { method, headers, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, { message: "Could not reach the server. Check your connection and try again.", code: "network_error" });
    }
    const text = await resp.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = null; }
    }
    if (!resp.ok) {
      const err = new ApiError(resp.status, data && data.error);
      // a session that ended (logout elsewhere, password change, expiry) sends an app page to log in
      // (not while logging out: a request still in flight then ends in 401 and must not overtake it)
      if (SESSION_GONE.has(err.code) && !MG.onPublicPage() && !MG.loggingOut) MG.toLogin();
      throw err;
    }
    return data;
  };

  MG.query = function (params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (v !== undefined && v !== null && v !== "") q.set(k, v);
    }
    const s = q.toString();
    return s ? "?" + s : "";
  };

  /* ---------- DOM helpers ---------- */

  // h("a", {href: "/x", class: "y"}, "text", child): text is always set as text, never parsed as HTML.
  MG.h = function (tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === false || v === null || v === undefined) continue;
      if (k === "class") el.className = v;
      else if (k === "dataset") Object.assign(el.dataset, v);
      else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  };
  const h = MG.h;

  MG.$ = (root, sel) => root.querySelector(sel);
  MG.$$ = (root, sel) => Array.from(root.querySelectorAll(sel));

  MG.fillRows = function (tbody, rows, render, emptyText) {
    const cols = tbody.closest("table").querySelectorAll("thead th").length || 1;
    tbody.replaceChildren();
    if (!rows || rows.length === 0) {
      tbody.append(h("tr", {}, h("td", { colspan: cols, class: "empty-row" }, h("span", {}, emptyText))));
      return;
    }
    for (const row of rows) tbody.append(render(row));
  };

  MG.loadingRow = function (tbody, text) {
    const cols = tbody.closest("table").querySelectorAll("thead th").length || 1;
    tbody.replaceChildren(h("tr", {}, h("td", { colspan: cols, "aria-busy": "true" }, text || "Loading…")));
  };

  MG.badge = (text, kind) => h("span", { class: "badge " + (kind || "") }, text);

  /* ---------- errors, busy states, toasts ---------- */

  MG.showError = function (box, err) {
    if (!box) { MG.toast(err.message, "error"); return; }
    box.textContent = err.message || String(err);
    box.hidden = false;
  };

  // Show an API error on a form: the message at the top, the named field marked invalid and focused.
  MG.formError = function (form, err) {
    MG.clearFormError(form);
    MG.showError(MG.$(form, "[data-form-error]"), err);
    const field = err.param && form.elements.namedItem(String(err.param).split(".").pop());
    if (field && field.setAttribute) {
      field.setAttribute("aria-invalid", "true");
      field.focus();
    }
  };

  MG.clearFormError = function (form) {
    const box = MG.$(form, "[data-form-error]");
    if (box) { box.hidden = true; box.textContent = ""; }
    for (const el of MG.$$(form, "[aria-invalid]")) el.removeAttribute("aria-invalid");
  };

  MG.busy = function (button, on) {
    if (!button) return;
    button.disabled = on;
    if (on) button.setAttribute("aria-busy", "true");
    else button.removeAttribute("aria-busy");
  };

  MG.toast = function (message, kind) {
    const box = document.getElementById("toasts");
    if (!box) { return; }
    const el = h("div", { class: "toast " + (kind || ""), role: kind === "error" ? "alert" : "status" }, message);
    box.append(el);
    setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
  };

  // Submit handler wrapper: validation, busy button, error display; `work` gets the form's values.
  MG.onSubmit = function (form, work) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      MG.clearFormError(form);
      const invalid = MG.$$(form, "input, textarea, select").find((el) => !el.checkValidity());
      if (invalid) {
        invalid.setAttribute("aria-invalid", "true");
        MG.showError(MG.$(form, "[data-form-error]"), { message: MG.describeInvalid(invalid) });
        invalid.focus();
        return;
      }
      const button = event.submitter || MG.$(form, "button[type=submit]");
      MG.busy(button, true);
      try {
        await work(MG.values(form), form);
      } catch (err) {
        MG.formError(form, err);
      } finally {
        MG.busy(button, false);
      }
    });
  };

  MG.describeInvalid = function (el) {
    const label = (el.closest("label") && el.closest("label").firstChild.textContent.trim()) || el.name;
    const v = el.validity;
    if (v.valueMissing) return el.type === "checkbox" ? "Please tick the box: " + el.closest("label").textContent.trim() : `${label}: this field is required.`;
    if (v.tooShort) return `${label}: at least ${el.minLength} characters.`;
    if (v.tooLong) return `${label}: at most ${el.maxLength} characters.`;
    if (v.typeMismatch) return `${label}: ${el.type === "email" ? "enter a valid email address" : "check the format"}.`;
    return `${label}: ${el.validationMessage}`;
  };

  MG.values = function (form) {
    const out = {};
    for (const el of form.elements) {
      if (!el.name) continue;
      out[el.name] = el.type === "checkbox" ? el.checked : el.value.trim();
    }
    return out;
  };

  /* ---------- formatting ---------- */

  // Money arrives as integer micro-dollars; shown with 2 to 6 decimals so a small charge is never "$0.00".
  MG.usd = function (micros) {
    if (micros === null || micros === undefined) return "—";
    const n = Number(micros) / 1e6;
    // whole cents show as $10.00; anything finer keeps its micro-dollars ($9.999983, $0.000017)
    const exact = Math.abs(Math.round(n * 100) - n * 100) < 1e-6;
    return n.toLocaleString("en-US", {
      style: "currency", currency: "USD", minimumFractionDigits: 2, maximumFractionDigits: exact ? 2 : 6,
    });
  };

  MG.int = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"));

  MG.date = function (value) {
    if (!value) return "—";
    const d = new Date(value);
    if (Number.isNaN(d.getTime())) return String(value);
    return d.toISOString().slice(0, 10);
  };

  MG.datetime = function (value) {
    if (!value) return "—";
    const d = new Date(value);
    if (Number.isNaN(d.getTime())) return String(value);
    return d.toISOString().slice(0, 16).replace("T", " ");
  };

  MG.time = (value) => h("time", { datetime: value || "" }, MG.datetime(value));

  /* ---------- the signed-in user ---------- */

  MG.me = null;

  // Who is signed in (GET /api/me); sends the browser to the login page when nobody is.
  MG.loadMe = async function () {
    try {
      const data = await MG.api("GET", "/api/me");
      MG.setCsrf(data.csrf_token);
      MG.me = data.user || data;
      return MG.me;
    } catch (err) {
      if (err.status === 401) return null; // MG.api already sent the browser to the login page
      throw err;
    }
  };

  MG.isAdmin = (me) => !!me && (me.role === "admin" || me.is_admin === true);

  MG.toLogin = function (reason) {
    const next = location.pathname + location.search;
    location.assign("/login" + MG.query({ next: next === "/" ? "" : next, reason }));
  };

  // Where to go after logging in: a path on this site, or the overview. The value is read the way a
  // browser reads a URL (tab, CR and LF dropped, "\\" taken as "/", surrounding controls and spaces
  // trimmed, percent escapes decoded once for the check), so "/\t/evil", "/%2F/evil" and "\\/evil"
  // cannot become "//evil"; then it is resolved against this origin, which must not change.
  MG.safeNext = function (value) {
    if (typeof value !== "string") return "/";
    const cleaned = value.replace(/[\t\n\r]/g, "").replace(/^[\u0000-\u0020]+|[\u0000-\u0020]+$/g, "");
    let decoded;
    try {
      decoded = decodeURIComponent(cleaned);
    } catch (_) {
      return "/";
    }
    for (const form of [cleaned, decoded]) {
      const path = form.replace(/[\t\n\r]/g, "").replace(/\\/g, "/");
      if (!/^\/(?![\/])/.test(path) || /[\u0000-\u001f\u007f]/.test(path)) return "/";
    }
    let url;
    try {
      url = new URL(cleaned, location.origin);
    } catch (_) {
      return "/";
    }
    return url.origin === location.origin ? url.pathname + url.search + url.hash : "/";
  };

  MG.loadScript = function (src) {
    return new Promise((resolve, reject) => {
      const existing = document.querySelector(`script[src="${src}"]`);
      if (existing && existing.dataset.loaded) return resolve();
      const el = existing || h("script", { src });
      el.addEventListener("load", () => { el.dataset.loaded = "1"; resolve(); });
      el.addEventListener("error", () => reject(new Error("Could not load " + src)));
      if (!existing) document.head.append(el);
    });
  };

  MG.copy = async function (text, statusEl) {
    try {
      await navigator.clipboard.writeText(text);
      if (statusEl) statusEl.textContent = "Copied to the clipboard.";
    } catch (e) {
      if (statusEl) statusEl.textContent = "Copy is blocked here: select the text and copy it by hand.";
    }
  };
})();
