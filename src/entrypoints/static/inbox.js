// The inbox page: conversations (unanswered first, then by spend), one conversation's history,
// drafts, offer and flags; approve (send, edited or not) or discard. All text via textContent.

const $ = (id) => document.getElementById(id);
let current = null; // {fan_id, creator, detail}
let chosen = null; // draft number picked, or null for typed text

function money(cents) {
  return cents == null ? "" : `$${(cents / 100).toFixed(2)}`;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text != null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

async function api(path, options = {}) {
  const r = await fetch(path, {
    ...options,
    headers: { "Content-Type": "application/json", Accept: "application/json" },
  });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `${r.status}`);
  return body;
}

async function loadList() {
  const rows = await api("/api/inbox");
  const list = $("conversations");
  list.replaceChildren();
  const waiting = rows.filter((r) => r.unanswered).length;
  $("summary").textContent = `${waiting} unanswered · ${rows.length} conversation(s)`;
  for (const r of rows) {
    const li = el("li");
    const b = el("button", `${r.display_name || r.fan_id}`, r.unanswered ? "unanswered" : "");
    b.type = "button";
    b.dataset.fan = r.fan_id;
    b.dataset.creator = r.creator;
    if (current && current.fan_id === r.fan_id && current.creator === r.creator) b.setAttribute("aria-current", "true");
    b.append(el("span", `${r.creator} · ${r.status || "answered"} · spent ${money(r.spend_cents)}`, "meta"));
    b.append(el("span", r.last_text || "", "meta"));
    b.addEventListener("click", () => open(r.fan_id, r.creator));
    li.append(b);
    list.append(li);
  }
}

function pick(n, text) {
  chosen = n;
  $("reply").value = text;
  $("reply").focus();
}

async function open(fan, creator) {
  const d = await api(`/api/inbox/${encodeURIComponent(fan)}?creator=${encodeURIComponent(creator)}`);
  current = { fan_id: fan, creator, detail: d };
  chosen = null;
  $("conversation").hidden = false;
  $("fan-name").textContent = d.display_name ? `${d.display_name} (${d.fan_id})` : d.fan_id;
  const rt = d.reply_seconds.count ? ` · time to reply: last ${d.reply_seconds.last} s, avg ${d.reply_seconds.average} s` : "";
  $("fan-facts").textContent = `${d.creator} · spent ${money(d.spend_cents)} · has ${d.received.length} paid item(s)${rt}`;
  const h = $("history");
  h.replaceChildren();
  for (const m of d.history) {
    const li = el("li", null, m.direction);
    li.append(el("time", (m.sent_at || "").slice(0, 16).replace("T", " ")));
    li.append(document.createTextNode(m.text));
    h.append(li);
  }
  h.scrollTop = h.scrollHeight;
  let status = d.status ? `status: ${d.status}` : "";
  if (d.reason) status += ` — ${d.reason}`;
  if (d.status === "pending") status += " (the model is not available yet: templates below)";
  $("status").textContent = status;
  const flags = $("flags");
  flags.replaceChildren(...d.flags.map((f) => el("li", f)));
  $("drafts-title").textContent = d.drafts_are_templates ? "Template replies" : "Drafts";
  const drafts = $("drafts");
  drafts.replaceChildren();
  for (const dr of d.drafts) {
    const li = el("li");
    const b = el("button", dr.text);
    b.type = "button";
    b.dataset.draft = String(dr.n);
    b.addEventListener("click", () => pick(dr.n, dr.text));
    li.append(b);
    drafts.append(li);
  }
  if (d.drafts.length) pick(1, d.drafts[0].text);
  else $("reply").value = "";
  if (d.offer) {
    $("offer").hidden = false;
    $("offer-thumb").src = d.offer.thumb;
    $("offer-price").textContent = money(d.offer.price_cents);
    $("offer-what").textContent = [d.offer.category, d.offer.description].filter(Boolean).join(" · ");
    $("offer-include").checked = true;
  } else {
    $("offer").hidden = true;
  }
  $("send").disabled = !d.open;
  $("discard").disabled = !d.open;
  $("result").textContent = "";
  await loadList();
}

async function send() {
  if (!current) return;
  const text = $("reply").value;
  const body = { text, creator: current.creator, with_offer: $("offer-include").checked };
  if (chosen != null) body.draft = chosen;
  $("send").disabled = true;
  try {
    const r = await api(`/api/inbox/${encodeURIComponent(current.fan_id)}/send`, {
      method: "POST",
      body: JSON.stringify(body),
    });
    await open(current.fan_id, current.creator);
    $("result").textContent = `sent${r.edited ? " (edited)" : ""}${r.offer ? ` with the offer at ${money(r.offer.price_cents)}` : ""}`;
  } catch (e) {
    $("result").textContent = `not sent: ${e.message}`;
    $("send").disabled = false;
  }
}

async function discard() {
  if (!current) return;
  try {
    await api(`/api/inbox/${encodeURIComponent(current.fan_id)}/discard`, {
      method: "POST",
      body: JSON.stringify({ creator: current.creator }),
    });
    await open(current.fan_id, current.creator);
    $("result").textContent = "discarded: nothing was sent";
  } catch (e) {
    $("result").textContent = `not discarded: ${e.message}`;
  }
}

$("send").addEventListener("click", send);
$("discard").addEventListener("click", discard);
$("refresh").addEventListener("click", () => loadList().catch((e) => ($("summary").textContent = e.message)));
loadList().catch((e) => ($("summary").textContent = e.message));
