// itam-sync web UI: progressive enhancement only. Every page works without this script.
// - filter <select>s submit their form when changed;
// - the list search box updates the results as you type (fetches the same server-rendered page);
// - "/" focuses the search box.
(function () {
  "use strict";

  document.querySelectorAll("select[data-autosubmit]").forEach(function (sel) {
    sel.addEventListener("change", function () { if (sel.form) sel.form.requestSubmit ? sel.form.requestSubmit() : sel.form.submit(); });
  });

  var form = document.querySelector("form[data-live-form]");
  var input = form && form.querySelector("input[data-live-search]");
  if (form && input && window.fetch && window.DOMParser) {
    var timer = null, seq = 0;
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var params = new URLSearchParams();
        new FormData(form).forEach(function (v, k) { if (v !== "") params.append(k, v); });  // a new search starts at page 1
        var url = form.getAttribute("action") + "?" + params.toString();
        var mine = ++seq;
        document.body.classList.add("loading");
        fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
          .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
          .then(function (html) {
            if (mine !== seq) return;  // a newer search already answered
            var doc = new DOMParser().parseFromString(html, "text/html");
            var fresh = doc.getElementById("results"), old = document.getElementById("results");
            if (fresh && old) old.replaceWith(fresh);
            history.replaceState(null, "", url);
          })
          .catch(function () { form.submit(); })
          .finally(function () { if (mine === seq) document.body.classList.remove("loading"); });
      }, 250);
    });
  }

  document.addEventListener("keydown", function (ev) {
    if (ev.key !== "/" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var t = ev.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) return;
    var box = document.querySelector("input[data-live-search]") || document.querySelector("input[data-hotkey]");
    if (box) { ev.preventDefault(); box.focus(); box.select(); }
  });
})();
