// The run page's Delete control, for whoever may delete the run (operators any run, a user
// its own local runs; the server checks again). Two steps: Delete only asks, and nothing is
// sent until "Delete for good" is clicked.

import { api } from "./api.js";
import { clear, flash, h } from "./dom.js";
import { ACTIVE } from "./runs_common.js";

/** Whether this token may delete this run (whatever its status). */
export function mayDelete(me, run) {
  const ownLocal = run.owner === me.name && run.executor === "local";
  return Boolean(me.can.delete_any || (me.can.delete_own_local && ownLocal));
}

/**
 * The control, or null when this token may not delete the run. `page.sending()` is called
 * as the deletion is sent, `page.failed()` if it fails and `page.deleted()` once done.
 */
export function deleteControl(me, run, page) {
  if (!mayDelete(me, run)) return null;
  const box = h("div.actions.delete");
  const active = ACTIVE.has(run.status);

  function ask() {
    const confirmBtn = h("button.danger", { type: "button", dataset: { action: "delete-confirm" } },
      "Delete for good");
    const cancelBtn = h("button", { type: "button" }, "Cancel");
    const question = h("span.small", { id: "delete-question" },
      `Delete run ${run.name} with its metrics, logs, checkpoints and files? This cannot be undone.`);
    const group = h("div.confirm", { role: "group", "aria-labelledby": "delete-question" },
      question, confirmBtn, cancelBtn);
    confirmBtn.addEventListener("click", async () => {
      confirmBtn.disabled = true;
      cancelBtn.disabled = true;
      page.sending();
      try {
        await api("DELETE", `/v1/runs/${encodeURIComponent(run.id)}`);
      } catch (err) {
        page.failed();
        flash(`Delete failed: ${err.message}`);
        idle();
        return;
      }
      flash(`Run ${run.name} deleted.`, "note");
      page.deleted();
    });
    cancelBtn.addEventListener("click", idle);
    clear(box, group);
    cancelBtn.focus();
  }

  function idle() {
    const btn = h("button.danger", { type: "button", dataset: { action: "delete" },
      title: active ? "An active run cannot be deleted: stop it first."
        : "Delete this run and everything it recorded" }, "Delete");
    btn.disabled = active;
    btn.addEventListener("click", ask);
    clear(box, btn);
  }

  idle();
  return box;
}
