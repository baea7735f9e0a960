// Asks for an operator token, then shows /dashboard/state every second; nothing is kept beyond this tab.
"use strict";

const REFRESH_MS = 1000;
let token = null;
let timer = null;

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function fill(id, rows, empty, columns = 4) {
  const body = document.getElementById(id);
  body.replaceChildren();
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = cell(empty);
    td.colSpan = columns;
    tr.append(td);
    body.append(tr);
  }
  for (const values of rows) {
    const tr = document.createElement("tr");
    tr.append(...values.map(cell));
    body.append(tr);
  }
}

function show(state) {
  document.getElementById("total").textContent = state.total;
  document.getElementById("accounts").textContent = state.accounts;
  document.getElementById("lease-count").textContent = state.lease_count;
  document.getElementById("waiting").textContent = state.waiting;
  fill("rates", Object.entries(state.operations_per_second).map(([b, rate]) => [b, rate.toFixed(1)]),
       "no operations yet");
  fill("leases", state.leases.map((l) => [l.account, l.holder, l.token, l.seconds_left.toFixed(1) + " s"]),
       "no lease is held");
  fill("entries", state.entries.map((e) => [e.at.slice(11, 23), e.account, e.seq, e.kind, e.amount, e.balance]),
       "no entry yet", 6);
  fill("refusals", state.refusals.map((r) => [r.seconds_ago + " s ago", r.business, r.account, r.token]),
       "none");
}

function say(text, refused) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.classList.toggle("refused", refused);
}

async function refresh() {
  let response;
  try {
    response = await fetch("/dashboard/state", { headers: { Authorization: "Bearer " + token } });
  } catch (error) {
    say("The data server does not answer; trying again.", true);
    return;
  }
  if (response.status === 401) {
    clearInterval(timer);
    document.getElementById("board").hidden = true;
    say("The token was refused: it is not one of OPERATOR_TOKENS.", true);
    return;
  }
  if (!response.ok) {
    say("The data server answered " + response.status + "; trying again.", true);
    return;
  }
  show(await response.json());
  document.getElementById("board").hidden = false;
  say("Live, refreshed every second.", false);
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  token = document.getElementById("token").value;
  clearInterval(timer);
  refresh();
  timer = setInterval(refresh, REFRESH_MS);
});
