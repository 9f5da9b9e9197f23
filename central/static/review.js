// Event page: keyboard shortcuts for the decision form. C confirms, E escalates, D dismisses (with an empty
// reason it puts the cursor in the reason field instead, since a dismissal needs one). Keys are ignored while
// typing; Esc leaves the reason field. A form is submitted once, however often a key or button is pressed.
// Keys act only on an event the officer has claimed (the form carries data-claimed): a stray key press on an
// event someone else is looking at must never decide it.
(function () {
  "use strict";
  const form = document.getElementById("decision-form");
  if (!form) {
    return;
  }
  const reason = form.elements.namedItem("reason");
  let submitting = false;

  // Back/forward cache: a page restored after its form was sent must accept a decision again.
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) {
      submitting = false;
    }
  });

  form.addEventListener("submit", function (event) {
    if (submitting) {
      event.preventDefault();
    }
    submitting = true;
  });

  document.addEventListener("keydown", function (event) {
    if (form.dataset.claimed !== "1") {
      return;
    }
    if (event.defaultPrevented || event.repeat || event.ctrlKey || event.metaKey || event.altKey) {
      return;
    }
    const target = event.target;
    if (target instanceof Element && target.closest("input, textarea, select, [contenteditable]")) {
      if (event.key === "Escape" && target === reason) {
        reason.blur();
      }
      return;
    }
    if (!/^[a-z]$/i.test(event.key)) {
      return;
    }
    const button = form.querySelector('button[data-key="' + event.key.toLowerCase() + '"]');
    if (!button) {
      return;
    }
    event.preventDefault();
    if (button.value === "dismiss" && reason.value.trim() === "") {
      reason.setAttribute("aria-invalid", "true");
      reason.focus();
      return;
    }
    if (!submitting) {
      form.requestSubmit(button);
    }
  });
})();
