// The dashboard's only script, served as a file: the Content-Security-Policy allows no
// inline script.

// A button pressed twice must not post twice: the second press is ignored.
document.addEventListener("submit", function (event) {
  var button = event.submitter;
  if (button && event.target.method === "post") { setTimeout(function () { button.disabled = true; }, 0); }
});

// Choosing a location shows it at once (the form's button is there for when scripts are off).
document.addEventListener("change", function (event) {
  if (event.target.id === "location") { event.target.form.requestSubmit(); }
});
