// The server's event stream (GET /v1/events/stream) read through fetch, because EventSource
// cannot send an Authorization header. Reconnects after a drop and resumes after the last
// event id, so no stored event is missed; progress frames are a live view and carry no id.

import { authHeaders, qs } from "./api.js";
import { debounce } from "./dom.js";

const RETRY_MS = 2000;
const listeners = new Set();
let connected = false;
let open = 0; // streams subscribed now (a page without one shows no "live" dot)

/** fn(connected, streams) when a stream connects, drops, opens or closes (the "live" dot). */
export function onConnectionChange(fn) {
  listeners.add(fn);
  fn(connected, open);
}

function notify() {
  for (const fn of listeners) fn(connected, open);
}

function setConnected(value) {
  if (value === connected) return;
  connected = value;
  notify();
}

/** Parse complete frames out of `buffer`; returns what is left (an unfinished frame). */
export function parseFrames(buffer, emit) {
  let at;
  while ((at = buffer.search(/\r?\n\r?\n/)) >= 0) {
    const raw = buffer.slice(0, at);
    buffer = buffer.slice(at + (buffer[at] === "\r" ? 4 : 2));
    const frame = { id: null, event: "message", data: [] };
    for (const line of raw.split(/\r?\n/)) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const key = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (key === "data") frame.data.push(value);
      else if (key === "event") frame.event = value;
      else if (key === "id") frame.id = value;
    }
    if (frame.data.length) emit(frame);
  }
  return buffer;
}

/**
 * Subscribe to the stream (all runs, or one with `runId`). `onFrame(event, data)` gets each
 * frame with its JSON parsed. Returns {close()}.
 */
export function subscribe({ runId = null, onFrame }) {
  const state = { closed: false, lastId: null, controller: null, timer: null };

  async function connect() {
    if (state.closed) return;
    state.controller = new AbortController();
    const params = { run_id: runId, after_id: state.lastId };
    try {
      const resp = await fetch(`/v1/events/stream${qs(params)}`, {
        headers: authHeaders({ Accept: "text/event-stream" }), signal: state.controller.signal,
        cache: "no-store",
      });
      if (!resp.ok || !resp.body) throw new Error(`stream answered ${resp.status}`);
      setConnected(true);
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer = parseFrames(buffer + decoder.decode(value, { stream: true }), (frame) => {
          if (frame.id !== null) state.lastId = frame.id;
          let data;
          try {
            data = JSON.parse(frame.data.join("\n"));
          } catch {
            return;
          }
          try {
            onFrame(frame.event, data);
          } catch (err) {
            console.error("event handler failed", err);
          }
        });
      }
    } catch (err) {
      if (state.closed) return;
      console.warn("event stream dropped:", err.message || err);
    }
    setConnected(false);
    if (!state.closed) state.timer = setTimeout(connect, RETRY_MS);
  }

  open += 1;
  notify();
  connect();
  return {
    close() {
      if (state.closed) return;
      state.closed = true;
      open -= 1;
      if (!open) connected = false;
      notify();
      clearTimeout(state.timer);
      if (state.controller) state.controller.abort();
    },
  };
}

/** Run `load` now, soon after each status event (not progress frames), and every
 * `everyMs`; returns the page's cleanup. For pages that show a whole list again. */
export async function reloadLive(load, everyMs) {
  const soon = debounce(load, 500);
  const stream = subscribe({ onFrame: (event) => { if (event !== "progress") soon(); } });
  const timer = setInterval(load, everyMs);
  await load();
  return () => {
    stream.close();
    clearInterval(timer);
  };
}
