// The run table's "Compare selected" button: enabled once two runs are ticked, with the
// count on it. Without JavaScript the button always submits and the server says why a
// comparison needs two runs.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("compare-form");
  if (!form) return;
  const button = form.querySelector("button.compare");
  const update = () => {
    const n = form.querySelectorAll('input[name="ids"]:checked').length;
    button.disabled = n < 2;
    button.textContent = n ? `Compare ${n} selected` : "Compare selected";
  };
  form.addEventListener("change", update);
  update();
});
