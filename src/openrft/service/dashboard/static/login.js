// The login form: check the key against the API, keep it in sessionStorage, go back.
"use strict";

(async () => {
  const config = await fetch("/dashboard/api/config").then((r) => r.json());
  const next = new URLSearchParams(window.location.search).get("next") || "/";
  const safeNext = next.startsWith("/") && !next.startsWith("//") ? next : "/";
  if (!config.auth) {
    window.location.replace(safeNext);
    return;
  }
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = document.getElementById("api-key").value.trim();
    error.hidden = true;
    const response = await fetch("/dashboard/api/whoami", {
      headers: { Authorization: "Bearer " + key },
    });
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      error.textContent = (body && body.error && body.error.message) || "That key was refused.";
      error.hidden = false;
      return;
    }
    ORFT.setKey(key);
    window.location.assign(safeNext);
  });
  ORFT.ready(form);
})();
