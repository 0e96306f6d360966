// Shared by every dashboard page: the API key, API calls, polling and small DOM helpers.
// Data from the server is only ever put in the page with textContent (never innerHTML):
// completions and file contents are untrusted text.
"use strict";

const KEY = "openrft.apiKey";

const ORFT = {
  key() {
    return sessionStorage.getItem(KEY);
  },

  setKey(key) {
    sessionStorage.setItem(KEY, key);
  },

  logout() {
    sessionStorage.removeItem(KEY);
    window.location.assign("/login");
  },

  toLogin() {
    const next = window.location.pathname + window.location.search;
    window.location.assign("/login?next=" + encodeURIComponent(next));
  },

  headers(extra) {
    const headers = Object.assign({}, extra || {});
    const key = ORFT.key();
    if (key) headers.Authorization = "Bearer " + key;
    return headers;
  },

  // fetch `path`; JSON bodies are encoded; errors raise with the API's error message.
  async api(path, options) {
    const opts = Object.assign({ method: "GET" }, options || {});
    const init = { method: opts.method, headers: ORFT.headers() };
    if (opts.form) {
      init.body = opts.form;
    } else if (opts.json !== undefined) {
      init.body = JSON.stringify(opts.json);
      init.headers["Content-Type"] = "application/json";
    }
    const response = await fetch(path, init);
    if (response.status === 401 && !opts.noRedirect) {
      ORFT.toLogin();
      throw new Error("not logged in");
    }
    if (opts.raw) return response;
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const error = new Error(
        (body && body.error && body.error.message) || response.status + " " + response.statusText,
      );
      error.status = response.status;
      error.body = body;
      throw error;
    }
    return body;
  },

  // Run `task` now and then every `ms` while the tab is visible; stop when it returns false.
  poll(task, ms) {
    let stopped = false;
    const tick = async () => {
      if (stopped) return;
      let again = true;
      if (!document.hidden) {
        try {
          again = (await task()) !== false;
        } catch (error) {
          ORFT.flash(error.message);
        }
      }
      if (again) setTimeout(tick, ms);
    };
    tick();
    return () => {
      stopped = true;
    };
  },

  flash(message, kind) {
    const box = document.getElementById("flash");
    box.textContent = message;
    box.className = "flash " + (kind || "error");
    box.hidden = !message;
    clearTimeout(ORFT._flashTimer);
    if (message) ORFT._flashTimer = setTimeout(() => (box.hidden = true), 8000);
  },

  // el("td", {class: "num"}, "text", childNode, ...)
  el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  },

  number(value, digits) {
    if (typeof value !== "number" || !Number.isFinite(value)) return "—";
    return value.toFixed(digits === undefined ? 3 : digits);
  },

  time(seconds) {
    if (!seconds) return "—";
    return new Date(seconds * 1000).toLocaleString();
  },

  duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  },

  status(status) {
    return ORFT.el("span", { class: "status status-" + status }, status);
  },

  TERMINAL: ["succeeded", "failed", "cancelled"],

  // The page's buttons ship disabled (a click before its handler exists would be lost, or
  // submit a form natively); enable those under `root` once every handler is attached.
  ready(root) {
    for (const button of root.querySelectorAll("button[disabled]")) button.disabled = false;
    document.body.dataset.ready = "true";
  },

  // Every page but /login: send the user to log in when a key is needed and missing, and
  // show which project the key belongs to.
  async start() {
    const config = await fetch("/dashboard/api/config").then((r) => r.json());
    ORFT.config = config;
    if (config.auth && !ORFT.key()) {
      ORFT.toLogin();
      return false;
    }
    const who = await ORFT.api("/dashboard/api/whoami");
    const badge = document.getElementById("who");
    badge.textContent = "project: " + who.project;
    badge.hidden = false;
    const logout = document.getElementById("logout");
    logout.hidden = !config.auth;
    logout.addEventListener("click", ORFT.logout);
    return true;
  },
};

window.ORFT = ORFT;
