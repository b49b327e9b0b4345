// outbox.js: the demo page's development outbox panel. Without SMTP_URL, outside
// production, the app keeps the mail it sends (GET /dev/mail?to=<address>, newest first);
// the panel lists the mail to one address, its links clickable. The page names the
// outbox in data-outbox (empty in production) and the panel shows only once the outbox
// answers 200. A plain script (the page's CSP runs no inline code); it defines
// window.TransomOutbox.
//
//   const outbox = TransomOutbox.create({ url: "/dev/mail", panel, form, address, list, empty });
//   outbox.start();         // the first look; shows the panel if the outbox answers
//   outbox.watch(address);  // after a request that mails `address`: refresh until it arrives
(function (root) {
  "use strict";

  const ADDRESS_KEY = "outbox-to"; // sessionStorage: the address survives a link's page load
  const WATCH_TRIES = 20;
  const WATCH_INTERVAL_MS = 500;
  const LINK = /https?:\/\/[^\s<>"']+/g;

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  /** The text of a mail as nodes: its http(s) links as anchors, the rest as text. */
  function linkified(text) {
    const fragment = document.createDocumentFragment();
    let last = 0;
    for (const match of text.matchAll(LINK)) {
      fragment.append(text.slice(last, match.index));
      const anchor = document.createElement("a");
      anchor.href = match[0];
      anchor.textContent = match[0];
      fragment.append(anchor);
      last = match.index + match[0].length;
    }
    fragment.append(text.slice(last));
    return fragment;
  }

  function mailItem(mail) {
    const item = document.createElement("li");
    item.dataset.id = mail._id;
    item.dataset.kind = mail.kind;
    const subject = document.createElement("div");
    subject.className = "subject";
    subject.textContent = mail.subject;
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = `to ${mail.to} · ${new Date(mail.sent_at).toLocaleTimeString()} · ${mail.kind}`;
    const body = document.createElement("pre");
    body.className = "body";
    body.append(linkified(mail.text));
    item.append(subject, meta, body);
    return item;
  }

  function create({ url, panel, form, address, list, empty }) {
    const seen = new Set(); // the ids of every mail shown so far
    address.value = sessionStorage.getItem(ADDRESS_KEY) || "";

    function setAddress(value) {
      address.value = value;
      sessionStorage.setItem(ADDRESS_KEY, value);
    }

    /** The mail to the panel's address, or null where there is no outbox (panel hidden). */
    async function fetchMail() {
      const to = address.value.trim();
      const response = await fetch(`${url}?to=${encodeURIComponent(to)}`);
      panel.hidden = response.status !== 200;
      if (panel.hidden) return null;
      const { mail } = await response.json();
      return to ? mail : []; // no address: no list (a blank `to` would list everyone's mail)
    }

    function show(mail) {
      list.replaceChildren(...mail.map(mailItem));
      empty.hidden = mail.length > 0;
      const fresh = mail.some((one) => !seen.has(one._id));
      mail.forEach((one) => seen.add(one._id));
      return fresh;
    }

    /** Refresh the list; whether it holds mail not shown before. */
    async function refresh() {
      const mail = await fetchMail();
      return mail !== null && show(mail);
    }

    // Mail goes out in the background: look again until a new one is listed.
    async function watch(to) {
      if (!url) return;
      if (to) setAddress(to);
      if (!address.value.trim()) return;
      for (let i = 0; i < WATCH_TRIES; i += 1) {
        if ((await refresh()) || panel.hidden) return;
        await sleep(WATCH_INTERVAL_MS);
      }
    }

    function start() {
      if (!url) return Promise.resolve(); // production: no outbox, never asked
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        setAddress(address.value.trim());
        refresh().catch(() => {});
      });
      return refresh().catch(() => {
        panel.hidden = true;
      });
    }

    return { start, watch, refresh };
  }

  root.TransomOutbox = { create };
})(self);
