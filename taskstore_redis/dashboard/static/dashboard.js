// The dashboard's live updates. Without JavaScript every page reads the same, as of its load.
// A page with data-refresh-ms on <main> fetches itself again at that pace and swaps its
// <main> in (the server reads the store once per interval for every open page); a task's
// page listens to its server-sent events and swaps in the task's body at each change.
"use strict";

(function () {
  const main = document.getElementById("live");
  if (main && main.dataset.refreshMs) {
    const pause = Math.max(500, Number(main.dataset.refreshMs));
    const refresh = async function () {
      const editing = document.activeElement && main.contains(document.activeElement) &&
        ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
      if (!editing) {
        try {
          const response = await fetch(window.location.href, { credentials: "same-origin" });
          if (response.ok) {
            const page = new DOMParser().parseFromString(await response.text(), "text/html");
            const fresh = page.getElementById("live");
            if (fresh) {
              main.replaceChildren(...Array.from(fresh.childNodes).map(
                (node) => document.importNode(node, true)));
            }
          }
        } catch (error) {
          // the server away for a moment: keep the page, try again at the next turn
        }
      }
      window.setTimeout(refresh, pause);
    };
    window.setTimeout(refresh, pause);
  }

  const task = document.getElementById("task");
  if (task && task.dataset.events && window.EventSource) {
    const source = new EventSource(task.dataset.events);
    source.addEventListener("task", function (event) {
      const page = new DOMParser().parseFromString(
        "<div>" + event.data + "</div>", "text/html");
      task.replaceChildren(...Array.from(page.body.firstChild.childNodes).map(
        (node) => document.importNode(node, true)));
      task.dataset.live = "updated";
    });
    const stop = function () { source.close(); task.dataset.live = "ended"; };
    source.addEventListener("end", stop);
    source.addEventListener("gone", stop);
  }
})();
