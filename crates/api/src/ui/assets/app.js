// homeostat's dashboard script: live refresh and the theme switch. No dependencies, no build step.
// Every page works without it; with it, the parts of a page marked `data-live` follow the journal.
(function () {
  "use strict";

  // Theme: the system's unless the viewer chose; the choice is kept in this browser only.
  var root = document.documentElement;
  var saved = localStorage.getItem("homeostat-theme");
  if (saved === "light" || saved === "dark") root.setAttribute("data-theme", saved);

  document.addEventListener("DOMContentLoaded", function () {
    var toggle = document.querySelector("[data-theme-toggle]");
    if (toggle) {
      toggle.hidden = false;
      toggle.addEventListener("click", function () {
        var dark = root.getAttribute("data-theme") === "dark" ||
          (!root.getAttribute("data-theme") && matchMedia("(prefers-color-scheme: dark)").matches);
        var next = dark ? "light" : "dark";
        root.setAttribute("data-theme", next);
        localStorage.setItem("homeostat-theme", next);
      });
    }
    if (document.querySelector("[data-live]") && window.EventSource) follow();
    if (window.EventSource) document.querySelectorAll("[data-log-src]").forEach(stream);
  });

  // A run's journal, line by line as it commits; the server says `end` when the run has ended,
  // and a reconnection resumes after the last line (the browser sends Last-Event-ID).
  function stream(log) {
    var source = new EventSource(log.getAttribute("data-log-src"));
    var first = true;
    source.addEventListener("line", function (event) {
      if (first) { log.textContent = ""; first = false; }
      log.textContent += event.data + "\n";
    });
    source.addEventListener("end", function () {
      source.close();
      log.setAttribute("data-ended", "true");
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  // Re-reads this page when the journal changes and swaps in its `data-live` parts, so an
  // alert appears in the list without a reload. Forms are outside those parts, so what the
  // viewer is typing is never replaced.
  function follow() {
    var busy = false, again = false;
    // The page says the count of changes it was drawn at; the stream says at once if that is
    // already old, so nothing between drawing the page and opening the stream is missed.
    var source = new EventSource("/live?since=" + encodeURIComponent(document.body.getAttribute("data-version") || ""));
    source.addEventListener("changed", refresh);
    // A browser holds few connections per server (six over HTTP/1.1); a stream left open by a page
    // the viewer left would take one for good, and the seventh page would wait for ever.
    window.addEventListener("pagehide", function () { source.close(); });
    function refresh() {
      if (busy) { again = true; return; }
      busy = true;
      fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) {
          if (!response.ok || response.redirected) throw new Error("status " + response.status);
          return response.text();
        })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html").querySelectorAll("[data-live]");
          var current = document.querySelectorAll("[data-live]");
          if (fresh.length !== current.length) return;
          for (var i = 0; i < current.length; i++) {
            if (current[i].innerHTML !== fresh[i].innerHTML) current[i].innerHTML = fresh[i].innerHTML;
          }
          document.body.setAttribute("data-refreshed", String(Date.now()));
        })
        .catch(function () { /* the next change tries again */ })
        .then(function () {
          busy = false;
          if (again) { again = false; refresh(); }
        });
    }
  }
})();
