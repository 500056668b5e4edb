// tether.js: the browser client for tether servers (an ES module, no build step).
//
// Speaks the wire protocol of docs/protocol.md, as tether.client.Client does in
// Python: requests matched to replies by id, answers to the server's calls,
// group messages with positions, reconnects with exponential backoff and
// jitter, re-joins its groups from their last positions. Types: tether.d.ts.

const FINAL_CLOSE_CODES = new Set([1000, 1002, 1003, 1007, 1008, 1009, 1010]);

/** Whether a close code from the server means: do not reconnect. */
export function isFinal(code) {
  return FINAL_CLOSE_CODES.has(code) || (code >= 4000 && code <= 4999);
}

/** The server answered a request with an error (or the client's own: timeout, closed). */
export class CallError extends Error {
  constructor(event, code, message = "", data = undefined) {
    super(`${event}: ${code}${message ? `: ${message}` : ""}`);
    this.name = "CallError";
    this.event = event;
    this.code = code;
    this.detail = message;
    this.data = data;
  }
}

/** Throw from an `onCall` handler to answer the server's call with this error. */
export class RequestError extends Error {
  constructor(code, message = "", data = undefined) {
    super(message || code);
    this.name = "RequestError";
    this.code = code;
    this.data = data;
  }
}

/** Milliseconds before attempt `attempt` (1 for the first retry). */
export function backoffDelay(backoff, attempt) {
  const { initial = 500, factor = 2, maximum = 30000, jitter = 0.5 } = backoff;
  const delay = Math.min(maximum, initial * factor ** Math.max(0, attempt - 1));
  return delay - Math.random() * delay * jitter;
}

export class TetherClient {
  constructor(url, options = {}) {
    this.url = url;
    this.eventKey = options.eventKey ?? "type";
    this.requestKey = options.requestKey ?? "ref";
    this.reconnect = options.reconnect ?? true;
    this.backoff = options.backoff ?? {};
    this.protocols = options.protocols;
    // Where positions survive a page reload (sessionStorage by default), under this key.
    this.storageKey = options.storageKey ?? null;
    this.storage = options.storage ?? globalThis.sessionStorage ?? null;
    this.positions = this._loadPositions();
    this.groups = new Map(); // group -> the event that joins it
    this.connects = 0;
    this.closeCode = null;
    this.state = "idle"; // "connecting" | "open" | "waiting" | "offline" | "closed"
    this._handlers = new Map();
    this._callHandlers = new Map();
    this._listeners = { message: [], state: [] };
    this._pending = new Map();
    this._nextId = 0;
    this._failures = 0;
    this._socket = null;
    this._timer = null;
    this._waiters = []; // sends waiting for a connection
    this._queue = []; // messages for the async iterator
    this._readers = [];
    this._closed = null;
    this._online = () => this._wake();
    this._offline = () => this._goOffline();
    globalThis.addEventListener?.("online", this._online);
    globalThis.addEventListener?.("offline", this._offline);
  }

  /** Connect; resolves once open (rejects if the client gives up first). */
  connect() {
    if (!this._socket && !this._timer) this._open();
    return this._ready();
  }

  /** Call `handler(message)` for each server message whose event is `event`. */
  on(event, handler) {
    this._handlers.set(event, handler);
    return this;
  }

  /** Answer the server's `self.call(event, data)` with `handler(data)`'s result. */
  onCall(event, handler) {
    this._callHandlers.set(event, handler);
    return this;
  }

  /** Listen to "message" (messages no `on` handler took) or "state" (state changes). */
  addEventListener(kind, listener) {
    this._listeners[kind].push(listener);
  }

  /** Send an event: `{type: event, ...data}` for an object, else `{type: event, data}`. */
  async send(event, data = undefined) {
    await this.sendJson(this._envelope(event, data, undefined));
  }

  /** Send any JSON value; waits for a connection while reconnecting. */
  async sendJson(message) {
    const socket = await this._ready();
    socket.send(JSON.stringify(message));
  }

  /** Send a request; resolves with the reply's data, rejects with a CallError. */
  request(event, data = undefined, { timeout = 5000 } = {}) {
    const id = ++this._nextId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new CallError(event, "timeout", `no reply within ${timeout / 1000}s`));
      }, timeout);
      this._pending.set(id, { event, resolve, reject, timer });
      this._ready().then(
        (socket) => this._pending.has(id) && socket.send(JSON.stringify(this._envelope(event, data, id))),
        (error) => this._settle(id, false, { code: "closed", message: error.message }),
      );
    });
  }

  /** Join `group` through the server's `join` handler, from its last position; re-joined after reconnects. */
  join(group, { event = "join", timeout = 5000 } = {}) {
    this.groups.set(group, event);
    return this.request(event, { group, since: this.positions[group] ?? null }, { timeout });
  }

  /** Close with 1000: pending requests fail, iteration ends, nothing reconnects. */
  close() {
    this._closed = new Error("the client is closed");
    clearTimeout(this._timer);
    this._timer = null;
    globalThis.removeEventListener?.("online", this._online);
    globalThis.removeEventListener?.("offline", this._offline);
    this._socket?.close(1000);
    this._finish();
  }

  /** Messages no `on` handler took, as they arrive; ends when the client closes. */
  async *[Symbol.asyncIterator]() {
    while (true) {
      if (this._queue.length) {
        yield this._queue.shift();
        continue;
      }
      if (this._closed) return;
      await new Promise((wake) => this._readers.push(wake));
    }
  }

  // -- inside --------------------------------------------------------------------

  _envelope(event, data, id) {
    const message = { [this.eventKey]: event };
    if (id !== undefined) message[this.requestKey] = id;
    if (data !== null && typeof data === "object" && !Array.isArray(data)) Object.assign(message, data);
    else if (data !== undefined) message.data = data;
    return message;
  }

  _setState(state) {
    this.state = state;
    for (const listener of this._listeners.state) listener(state);
  }

  _ready() {
    if (this._closed) return Promise.reject(this._closed);
    if (this._socket?.readyState === WebSocket.OPEN) return Promise.resolve(this._socket);
    return new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
  }

  _open() {
    this._timer = null;
    this._setState("connecting");
    // A function gives the URL afresh for each attempt (a `since` query parameter, a new token).
    const url = typeof this.url === "function" ? this.url(this) : this.url;
    const socket = (this._socket = new WebSocket(url, this.protocols));
    socket.onopen = () => {
      this._failures = 0;
      this.connects += 1;
      this._setState("open");
      for (const waiter of this._waiters.splice(0)) waiter.resolve(socket);
      for (const [group, event] of this.groups) {
        this.join(group, { event }).catch((error) => console.warn("tether: re-join failed", group, error));
      }
    };
    socket.onmessage = (event) => this._receive(event.data);
    socket.onclose = (event) => {
      if (this._socket !== socket) return; // replaced (offline, then online)
      this._socket = null;
      const opened = this.state === "open";
      if (opened) this.closeCode = event.code; // a failed attempt is not a connection that ended
      for (const id of [...this._pending.keys()]) {
        this._settle(id, false, { code: "closed", message: "the connection dropped before the reply" });
      }
      if (this._closed || this.state === "offline") return;
      if (!opened) this._failures += 1;
      const maxAttempts = this.backoff.maxAttempts ?? null;
      const giveUp = !this.reconnect || (opened && isFinal(event.code)) ||
        (maxAttempts !== null && this._failures >= maxAttempts);
      if (giveUp) {
        this._closed = new Error(`the connection closed with ${event.code}`);
        return this._finish();
      }
      this._setState("waiting");
      this._timer = setTimeout(() => this._open(), backoffDelay(this.backoff, Math.max(1, this._failures)));
    };
  }

  _wake() {
    // Back online: reconnect now rather than at the end of a backoff.
    if (this._closed || this._socket) return;
    clearTimeout(this._timer);
    this._open();
  }

  _goOffline() {
    if (this._closed) return;
    clearTimeout(this._timer);
    this._timer = null;
    this._setState("offline");
    const socket = this._socket;
    this._socket = null;
    if (socket) {
      this.closeCode = 1006;
      socket.close();
      for (const id of [...this._pending.keys()]) {
        this._settle(id, false, { code: "closed", message: "offline" });
      }
    }
  }

  _finish() {
    this._setState("closed");
    for (const waiter of this._waiters.splice(0)) waiter.reject(this._closed);
    for (const id of [...this._pending.keys()]) this._settle(id, false, { code: "closed", message: "closed" });
    for (const wake of this._readers.splice(0)) wake();
  }

  _settle(id, ok, value) {
    const pending = this._pending.get(id);
    if (!pending) return;
    this._pending.delete(id);
    clearTimeout(pending.timer);
    if (ok) pending.resolve(value);
    else pending.reject(new CallError(pending.event, value?.code ?? "bad_request", value?.message ?? "", value?.data));
  }

  _receive(raw) {
    let message = raw;
    if (typeof raw === "string") {
      try {
        message = JSON.parse(raw);
      } catch {
        return this._deliver(raw);
      }
    }
    const isObject = message !== null && typeof message === "object" && !Array.isArray(message);
    if (isObject && this.requestKey in message && "ok" in message && !(this.eventKey in message)) {
      return this._settle(message[this.requestKey], message.ok === true, message.ok === true ? message.data : message.error);
    }
    if (isObject && "call" in message && this.eventKey in message) return this._answer(message);
    if (isObject && "offset" in message && "group" in message) {
      this.positions[message.group] = `${message.epoch}:${message.offset}`;
      this._savePositions();
      message = "data" in message ? message.data : message.bytes;
    }
    this._deliver(message);
  }

  _deliver(message) {
    const event = message !== null && typeof message === "object" ? message[this.eventKey] : undefined;
    const handler = typeof event === "string" ? this._handlers.get(event) : undefined;
    if (handler) {
      try {
        handler(message);
      } catch (error) {
        console.error("tether: the handler of", event, "threw", error);
      }
      return;
    }
    for (const listener of this._listeners.message) listener(message);
    this._queue.push(message);
    if (this._queue.length > 1024) this._queue.shift(); // nobody iterates: keep the newest
    for (const wake of this._readers.splice(0)) wake();
  }

  async _answer(message) {
    const call = message.call;
    const event = message[this.eventKey];
    const handler = this._callHandlers.get(event);
    let reply;
    if (!handler) {
      reply = { call, ok: false, error: { code: "unknown_event", message: `no handler for '${event}'` } };
    } else {
      try {
        reply = { call, ok: true, data: (await handler(message.data)) ?? null };
      } catch (error) {
        const known = error instanceof RequestError;
        reply = {
          call,
          ok: false,
          error: known
            ? { code: error.code, message: error.message, ...(error.data === undefined ? {} : { data: error.data }) }
            : { code: "internal_error", message: "internal error" },
        };
      }
    }
    if (this._socket?.readyState === WebSocket.OPEN) this._socket.send(JSON.stringify(reply));
  }

  _loadPositions() {
    if (!this.storageKey || !this.storage) return {};
    try {
      return JSON.parse(this.storage.getItem(this.storageKey) ?? "{}");
    } catch {
      return {};
    }
  }

  _savePositions() {
    if (this.storageKey && this.storage) this.storage.setItem(this.storageKey, JSON.stringify(this.positions));
  }
}
