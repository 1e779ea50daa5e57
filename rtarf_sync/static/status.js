// The status page's script: refresh from /scheduler/overview, redraw, and send the actions.
// Every value from the service is placed with textContent or setAttribute, never as HTML.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const TOKEN_KEY = "rtarf-sync-token";
  const body = document.body;
  const refreshMs = Number(body.dataset.refreshMs) || 5000;
  const tokenRequired = body.dataset.tokenRequired === "true";
  const $ = (id) => document.getElementById(id);
  let lastGood = new Date();
  let pending = null;  // the action waiting for a token

  function setLevel(element, level) {
    element.className = element.className.replace(/\blevel-\w+/g, "").trim() + " level-" + level;
  }

  function text(tag, value) {
    const element = document.createElement(tag);
    element.textContent = value;
    return element;
  }

  function renderCards(cards) {
    for (const card of cards) {
      const box = $("card-" + card.key);
      box.querySelector(".value").textContent = card.value;
      box.querySelector(".detail").textContent = card.detail;
      setLevel(box, card.level);
    }
  }

  function renderPanel(key, panel) {
    const box = $("panel-" + key);
    setLevel(box, panel.level);
    box.classList.toggle("unavailable", !panel.available);
    box.querySelector(".summary").textContent = panel.summary;
    box.querySelector(".details").replaceChildren(...panel.details.map((line) => text("li", line)));
    const table = box.querySelector("table");
    const head = document.createElement("tr");
    head.replaceChildren(...panel.columns.map((name) => Object.assign(text("th", name), {scope: "col"})));
    table.tHead.replaceChildren(head);
    table.tBodies[0].replaceChildren(...panel.rows.map((row) => {
      const line = document.createElement("tr");
      line.replaceChildren(...row.map((cell) => text("td", cell)));
      return line;
    }));
    table.hidden = panel.rows.length === 0;
  }

  function rect(cls, x, y, width, height) {
    const shape = document.createElementNS(SVG, "rect");
    const attributes = {class: cls, x: x, y: y, width: width, height: height};
    for (const name in attributes) shape.setAttribute(name, attributes[name]);
    return shape;
  }

  function drawChart(chart) {
    const marks = chart.marks.map((mark) => {
      const group = document.createElementNS(SVG, "g");
      group.setAttribute("class", "mark status-" + mark.status);
      group.setAttribute("data-run-id", mark.run_id);
      const title = document.createElementNS(SVG, "title");
      title.textContent = mark.title;
      group.append(title);
      if (mark.failed) {
        group.append(rect("failed-band", mark.x, chart.rate_top, mark.width,
                          chart.duration_top + chart.duration_height - chart.rate_top));
      }
      group.append(rect("rate", mark.x, mark.rate_y, mark.width, mark.rate_height),
                   rect("duration", mark.x, mark.duration_y, mark.width, mark.duration_height));
      return group;
    });
    $("chart-marks").replaceChildren(...marks);
    $("chart-rate-label").textContent = "events per second (top " + chart.rate_max + ")";
    $("chart-duration-label").textContent = "duration (top " + chart.duration_max + ")";
    $("chart-summary").textContent = chart.summary;
    $("chart-first").textContent = chart.first;
    $("chart-last").textContent = chart.last;
  }

  function render(view) {
    $("headline").textContent = view.headline.text;
    setLevel($("headline"), view.headline.level);
    $("updated").textContent = view.updated;
    renderCards(view.cards);
    drawChart(view.chart);
    for (const key in view.panels) renderPanel(key, view.panels[key]);
    $("verify-button").disabled = !view.actions.verify;
  }

  function offline(reason) {
    $("offline-detail").textContent = "Last answer at " + lastGood.toISOString().slice(11, 19) +
      " UTC (" + reason + "). What you see may be out of date; retrying every " + refreshMs / 1000 + " s.";
    $("offline-banner").hidden = false;
  }

  let timer = null;
  let refreshing = false;

  async function refresh() {
    if (refreshing) return;  // one request at a time; the running one schedules the next
    refreshing = true;
    clearTimeout(timer);
    try {
      const response = await fetch(body.dataset.overviewUrl, {cache: "no-store"});
      if (!response.ok) throw new Error("HTTP " + response.status);
      render((await response.json()).view);
      lastGood = new Date();
      $("offline-banner").hidden = true;
    } catch (error) {
      offline(error.message);
    } finally {
      refreshing = false;
      timer = setTimeout(refresh, refreshMs);
    }
  }

  function say(message, level) {
    $("action-message").textContent = message;
    setLevel($("action-message"), level);
  }

  function outcome(action, status, answer) {
    const message = answer.message || answer.error || "";
    if (status === 401) return ["The token was refused (401): " + message, "bad"];
    if (status === 409) return ["A sync is already running (409): " + message, "warn"];
    if (status === 404) return [action + " is not available in this version (404)", "warn"];
    if (status >= 400) return ["Failed (" + status + "): " + message, "bad"];
    if (action === "verify") {
      const differing = (answer.differing || []).length;
      return [answer.in_step ? "Verified: in step" : "Verified: " + differing + " buckets differ", differing ? "warn" : "ok"];
    }
    const result = answer.result;
    const counts = result ? ": " + result.total_processed + " processed, " + result.inserted + " inserted, " +
      result.updated + " updated" : "";
    return [message + counts, "ok"];
  }

  async function send(button) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (tokenRequired && !token) {
      pending = button;
      $("token-form").hidden = false;
      $("token-input").focus();
      say("Enter the API token to " + button.textContent.toLowerCase() + ".", "none");
      return;
    }
    const headers = {"Content-Type": "application/json"};
    if (token) headers.Authorization = "Bearer " + token;
    const name = button.textContent;
    for (const other of document.querySelectorAll("[data-action]")) other.setAttribute("aria-busy", "true");
    say(name + ": waiting for the service…", "none");
    try {
      const response = await fetch(button.dataset.path, {method: "POST", headers: headers, body: "{}",
                                                          credentials: "omit", cache: "no-store"});
      const answer = await response.json().catch(() => ({}));
      if (response.status === 401) {
        forgetToken(false);
        pending = button;
        $("token-form").hidden = false;  // let the person try another token
      }
      const [message, level] = outcome(name, response.status, answer);
      say(message, level);
    } catch (error) {
      say(name + " could not reach the service: " + error.message, "bad");
    } finally {
      for (const other of document.querySelectorAll("[data-action]")) other.removeAttribute("aria-busy");
      refresh();  // show what the action changed without waiting for the next period
    }
  }

  function forgetToken(announce) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("forget-token").hidden = true;
    if (announce) say("The token is forgotten.", "none");
  }

  for (const button of document.querySelectorAll("[data-action]")) {
    button.addEventListener("click", () => send(button));
  }
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    $("token-input").value = "";
    $("token-form").hidden = true;
    $("forget-token").hidden = false;
    if (pending) send(pending);
    pending = null;
  });
  $("token-cancel").addEventListener("click", () => {
    $("token-form").hidden = true;
    pending = null;
    say("", "none");
  });
  $("forget-token").addEventListener("click", () => forgetToken(true));
  $("forget-token").hidden = !sessionStorage.getItem(TOKEN_KEY);
  timer = setTimeout(refresh, refreshMs);
})();
