// The dashboard's one script, a file so that the Content-Security-Policy allows no inline
// script. Everything works without it.
(function () {
  "use strict";

  // A button pressed twice must not post twice: the second press is ignored.
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    if (button && event.target.method === "post") {
      setTimeout(function () { button.disabled = true; }, 0);
    }
  });
})();
