// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";

  function selectionForms() {
    document.querySelectorAll("form[data-selection]").forEach(function (form) {
      var all = form.querySelector("[data-select-all]");
      var boxes = function () {
        return Array.prototype.slice.call(form.querySelectorAll("tbody input[type=checkbox]"));
      };
      var buttons = form.querySelectorAll("[data-needs-selection]");
      var refresh = function () {
        var chosen = boxes().filter(function (box) { return box.checked; }).length;
        buttons.forEach(function (button) { button.disabled = chosen === 0; });
        if (all) {
          all.checked = chosen > 0 && chosen === boxes().length;
          all.indeterminate = chosen > 0 && chosen < boxes().length;
        }
      };
      if (all) {
        all.addEventListener("change", function () {
          boxes().forEach(function (box) { box.checked = all.checked; });
          refresh();
        });
      }
      form.addEventListener("change", refresh);
      refresh();
    });
  }

  function autosubmit() {
    document.querySelectorAll("[data-autosubmit]").forEach(function (control) {
      control.addEventListener("change", function () { control.form.submit(); });
    });
    document.querySelectorAll("[data-hide-with-js]").forEach(function (element) { element.hidden = true; });
  }

  // A destructive button asks first; once answered yes, the server need not ask again (without
  // this script it answers with a confirmation page instead).
  function confirmations() {
    document.querySelectorAll("[data-confirm]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        if (!window.confirm(button.getAttribute("data-confirm"))) {
          event.preventDefault();
          return;
        }
        var form = button.form;
        if (form && !form.querySelector("input[name=confirmed]")) {
          var confirmed = document.createElement("input");
          confirmed.type = "hidden";
          confirmed.name = "confirmed";
          confirmed.value = "yes";
          form.appendChild(confirmed);
        }
      });
    });
  }

  function copyButtons() {
    if (!navigator.clipboard) { return; }
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        // data-copy holds the whole value when the page shows it shortened.
        var text = button.getAttribute("data-copy") || button.parentElement.querySelector("code").textContent;
        navigator.clipboard.writeText(text).then(function () {
          button.firstChild.textContent = "Copied";
          setTimeout(function () { button.firstChild.textContent = "Copy"; }, 1500);
        });
      });
    });
  }

  function actionPresets() {
    var custom = document.querySelector("[data-preset-custom]");
    if (!custom) { return; }
    var radios = document.querySelectorAll("input[name=preset]");
    var refresh = function () {
      var chosen = document.querySelector("input[name=preset]:checked");
      custom.disabled = !chosen || chosen.value !== "custom";
    };
    radios.forEach(function (radio) { radio.addEventListener("change", refresh); });
    refresh();
  }

  document.addEventListener("DOMContentLoaded", function () {
    selectionForms();
    autosubmit();
    confirmations();
    copyButtons();
    actionPresets();
  });
})();
