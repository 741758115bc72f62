// rekko dashboard "Try it": refresh results as the form changes, without reloading the page.
(function () {
  "use strict";
  var form = document.querySelector("form.try");
  var target = document.getElementById("results");
  if (!form || !target) { return; }
  var timer = null;
  function refresh() {
    var params = new URLSearchParams(new FormData(form));
    fetch(form.getAttribute("data-results") + "?" + params.toString(), { credentials: "same-origin" })
      .then(function (response) { return response.text(); })
      .then(function (html) { target.innerHTML = html; history.replaceState(null, "", "?" + params.toString()); })
      .catch(function () { /* the submit button still works without script */ });
  }
  form.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(refresh, 300); });
  form.addEventListener("submit", function (event) { event.preventDefault(); refresh(); });
})();
