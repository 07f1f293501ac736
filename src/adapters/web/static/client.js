/**
 * tidings browser client: one WebSocket to a tidings gateway, any number of channels on it.
 *
 * A dependency-free ES module; no build step. It works in browsers and in any runtime with a
 * standard `WebSocket` (Node >= 22 has a global one; pass `options.WebSocket` elsewhere).
 *
 * ```js
 * import { Tidings } from "/client.js";
 * const rt = new Tidings("ws://127.0.0.1:6001/ws", { token: async () => fetchToken() });
 * rt.on("state", (state) => console.log(state));
 * const room = rt.subscribe("presence-chat.lobby");
 * room.on("client-message", (data) => console.log(data.text));
 * room.on("presence", (members) => console.log([...members.keys()]));
 * room.trigger("client-message", { text: "hello" });
 * ```
 *
 * What it does for you:
 *
 * - keeps the connection alive (pings) and reconnects with exponential backoff and jitter when it
 *   drops, asking a token provider for a fresh token each time;
 * - remembers, per channel, the last position it saw and resubscribes with `since` after a
 *   reconnect, so the gateway replays what was missed: no gap, no duplicate. Positions are opaque
 *   strings, only ever handed back to the gateway;
 * - keeps presence member lists up to date;
 * - queues subscriptions and client events made while disconnected and sends them once the
 *   connection (and the channel's subscription) is back;
 * - falls back to Server-Sent Events (`/sse`, receive-only) when WebSocket cannot connect
 *   (`sseAfter` failures in a row, or `transport: "sse"`), keeping every position, and says so
 *   (`"transport"` event, `rt.transport`).
 *
 * See docs/client.md for the protocol, close codes and error codes.
 *
 * @module tidings
 */

/** Close codes the gateway uses, by name. */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  INVALID_DATA: 1007,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  IDLE: 4000,
  TOKEN_EXPIRED: 4001,
  SLOW_CONSUMER: 4008,
  FLOODING: 4029,
  UNAUTHORIZED: 4401,
});

/**
 * What to do after each close code: the gateway's own table (`tidings.domain.disconnects`,
 * docs/protocol.md). "resume": reconnect with backoff and resume; "back-off": wait `floodDelay`
 * first; "new-token": reconnect with a fresh token; "no-retry": never the same token again;
 * "stop": do not reconnect on its own. A code not listed (1006, a proxy's) means "resume".
 */
export const Disconnects = Object.freeze({
  1000: "resume",
  1001: "resume",
  1002: "stop",
  1007: "stop",
  1009: "resume",
  1011: "resume",
  4000: "resume",
  4001: "new-token",
  4008: "resume",
  4029: "back-off",
  4401: "no-retry",
});

/** Error codes of the gateway's error frames, by name. */
export const ErrorCode = Object.freeze({
  BAD_FRAME: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  GONE: 410,
  TOO_LARGE: 413,
  RATE_LIMITED: 429,
});

/**
 * Subscription events that are not channel events; a broadcast event with one of these names is
 * still delivered to `"message"` listeners, but not by its name.
 */
const LIFECYCLE = new Set(["message", "subscribed", "unsubscribed", "error", "gap", "presence"]);

/** How many recent message ids a subscription remembers to drop a redelivered message. */
const SEEN_IDS = 256;

/**
 * The kind of a channel, from its name alone (the gateway decides the same way).
 * @param {string} name
 * @returns {"presence" | "private" | "public"}
 */
export function channelKind(name) {
  if (name.startsWith("presence-") || name.startsWith("presence.")) return "presence";
  if (name.startsWith("private-") || name.startsWith("private.") || name.startsWith("user.")) {
    return "private";
  }
  return "public";
}

/**
 * An error the gateway reported (error frame or close code) or the client detected.
 * `code` is the protocol error code (400, 401, 403, 404, 410, 413, 429, ...) or, for errors that
 * ended a connection, the WebSocket close code (4001, 4401, ...).
 */
export class TidingsError extends Error {
  /**
   * @param {number} code
   * @param {string} message
   * @param {string} [channel]
   */
  constructor(code, message, channel) {
    super(message);
    this.name = "TidingsError";
    /** @type {number} */
    this.code = code;
    /** @type {string | undefined} */
    this.channel = channel;
  }
}

/** A minimal event emitter; listener exceptions are reported without breaking the client. */
class Emitter {
  /** @type {Map<string, Set<Function>>} */
  #listeners = new Map();

  /**
   * Listen to `name`; returns a function that removes the listener.
   * @param {string} name
   * @param {Function} listener
   * @returns {() => void}
   */
  on(name, listener) {
    let set = this.#listeners.get(name);
    if (!set) this.#listeners.set(name, (set = new Set()));
    set.add(listener);
    return () => this.off(name, listener);
  }

  /**
   * Listen to the next `name` only.
   * @param {string} name
   * @param {Function} listener
   * @returns {() => void}
   */
  once(name, listener) {
    const off = this.on(name, (/** @type {any[]} */ ...args) => {
      off();
      listener(...args);
    });
    return off;
  }

  /**
   * Remove a listener (or every listener of `name` when none is given).
   * @param {string} name
   * @param {Function} [listener]
   */
  off(name, listener) {
    if (listener === undefined) this.#listeners.delete(name);
    else this.#listeners.get(name)?.delete(listener);
  }

  /** @param {string} name */
  listenerCount(name) {
    return this.#listeners.get(name)?.size ?? 0;
  }

  /**
   * @param {string} name
   * @param {...any} args
   * @returns {boolean} whether anybody listened
   */
  emit(name, ...args) {
    const set = this.#listeners.get(name);
    if (!set || set.size === 0) return false;
    for (const listener of [...set]) {
      try {
        listener(...args);
      } catch (error) {
        // A listener's bug must not break the connection; surface it like an uncaught error.
        setTimeout(() => {
          throw error;
        });
      }
    }
    return true;
  }
}

/**
 * A function (may be async) called before every connection attempt, so it can return a fresh
 * token after one expired.
 * @typedef {() => string | null | undefined | Promise<string | null | undefined>} TokenProvider
 */

/**
 * What the client needs of a WebSocket: the browser's, Node's (22 and later), Deno's and the
 * `ws` package's all have it.
 * @typedef {object} WebSocketLike
 * @property {number} readyState
 * @property {(data: string) => void} send
 * @property {(code?: number, reason?: string) => void} close
 * @property {((event: any) => void) | null} onmessage
 * @property {((event: any) => void) | null} onclose
 * @property {((event: any) => void) | null} onerror
 */

/**
 * @typedef {object} TidingsOptions
 * @property {string | TokenProvider | null} [token]
 *   A connection token, or a function (may be async) called before every connection attempt,
 *   so it can return a fresh token after one expired. None: connect anonymously (public
 *   channels only).
 * @property {number} [pingInterval=25000] Milliseconds between pings (the gateway closes a
 *   connection that sent nothing within its idle timeout, 120 s by default).
 * @property {number} [pongTimeout=10000] Milliseconds to wait for any frame after a ping before
 *   the connection is considered dead and replaced.
 * @property {number} [minDelay=500] First reconnect delay in milliseconds (doubled each attempt,
 *   with jitter: the actual delay is between half of it and all of it).
 * @property {number} [maxDelay=10000] Cap of the reconnect delay in milliseconds.
 * @property {number} [floodDelay=30000] Delay before reconnecting after the gateway closed the
 *   connection for flooding (4029).
 * @property {boolean} [autoConnect=true] Connect in the constructor; else call `connect()`.
 * @property {new (url: string) => WebSocketLike} [WebSocket] The WebSocket constructor (default:
 *   the global one).
 * @property {"auto" | "websocket" | "sse"} [transport="auto"] `"auto"`: WebSocket, and Server-Sent
 *   Events (receive-only) after `sseAfter` WebSocket attempts in a row failed to connect;
 *   `"websocket"`: never SSE; `"sse"`: SSE only.
 * @property {number} [sseAfter=3] WebSocket attempts that fail to connect, in a row, before
 *   `"auto"` falls back to SSE (it stays there until `reconnect()`).
 * @property {new (url: string) => EventSourceLike} [EventSource] The EventSource constructor
 *   (default: the global one; without any, no fallback).
 * @property {string | URL} [sseUrl] The gateway's SSE URL (default: `/sse` beside the WebSocket
 *   URL, with `http(s)://`).
 */

/**
 * What the client needs of an EventSource (the browser's has it).
 * @typedef {object} EventSourceLike
 * @property {(type: string, listener: (event: any) => void) => void} addEventListener
 * @property {() => void} close
 */

/**
 * @typedef {object} ConnectedInfo
 * @property {string} connection_id This connection's id (pass it as `exclude` when broadcasting
 *   so the action's author does not receive its own echo).
 * @property {string | null} user_id The token's user, or null when anonymous.
 * @property {string} node The gateway node serving this connection.
 */

/**
 * @typedef {object} EventFrame
 * @property {"event"} type
 * @property {string} id Unique message id.
 * @property {string} channel
 * @property {string} event
 * @property {any} data
 * @property {number} timestamp Seconds since the epoch, when the message was published.
 * @property {string} [position] Opaque resume position (absent on presence events).
 */

/**
 * A connection to a tidings gateway; see the module documentation.
 *
 * Events: `"state"` (state string), `"connected"` ({@link ConnectedInfo}), `"disconnected"`
 * (`{code, reason}` of the close), `"error"` ({@link TidingsError}).
 */
export class Tidings extends Emitter {
  /** @type {string} */
  url;
  /** @type {Required<Omit<TidingsOptions, "token" | "WebSocket" | "EventSource" | "sseUrl">>} */
  options;
  /** @type {string} */
  sseUrl;

  /** @type {string | TokenProvider | null} */
  #token;
  /** @type {(new (url: string) => WebSocketLike) | null} */
  #WebSocket;
  /** @type {(new (url: string) => EventSourceLike) | null} */
  #EventSource;
  /** @type {"websocket" | "sse"} */
  #transport = "websocket";
  /** WebSocket attempts in a row that did not connect. */
  #wsFailures = 0;
  #sseReopening = false;
  /** @type {"connecting" | "connected" | "disconnected" | "closed"} */
  #state = "disconnected";
  /** @type {WebSocketLike | null} */
  #socket = null;
  /** @type {ConnectedInfo | null} */
  #info = null;
  /** @type {Map<string, Subscription>} */
  #subscriptions = new Map();
  #attempts = 0;
  #stopped = true;
  #closed = false;
  #generation = 0;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #reconnectTimer = null;
  /** @type {ReturnType<typeof setInterval> | null} */
  #pingTimer = null;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #pongTimer = null;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #resendTimer = null;
  /**
   * The token the current (or last) connection used.
   * @type {string | null}
   */
  #usedToken = null;
  /**
   * A token the gateway refused (4401): never sent again.
   * @type {string | null}
   */
  #refusedToken = null;
  /**
   * The 401 error frame that precedes a refusal close, reported with it.
   * @type {TidingsError | null}
   */
  #authError = null;
  #wasConnected = false;
  #onOnline = () => {
    if (this.#reconnectTimer !== null && !this.#stopped) {
      clearTimeout(this.#reconnectTimer);
      this.#reconnectTimer = null;
      this.#open();
    }
  };

  /**
   * @param {string | URL} [url] The gateway's WebSocket URL, e.g. `ws://127.0.0.1:6001/ws`.
   *   `http(s)://` URLs are turned into `ws(s)://`; relative URLs are resolved against the page.
   *   Default in a browser: `/ws` on the page's own host.
   * @param {TidingsOptions} [options]
   */
  constructor(url, options = {}) {
    super();
    this.url = resolveUrl(url);
    const { token, WebSocket: WS, EventSource: ES, sseUrl, ...rest } = options;
    this.options = {
      pingInterval: 25000,
      pongTimeout: 10000,
      minDelay: 500,
      maxDelay: 10000,
      floodDelay: 30000,
      autoConnect: true,
      transport: "auto",
      sseAfter: 3,
      ...rest,
    };
    if (!["auto", "websocket", "sse"].includes(this.options.transport)) {
      throw new TypeError(`transport must be "auto", "websocket" or "sse", ` +
        `not ${JSON.stringify(this.options.transport)}`);
    }
    this.sseUrl = sseUrl !== undefined ? resolveHttpUrl(sseUrl) : sseUrlBeside(this.url);
    this.#token = token ?? null;
    this.#WebSocket = WS ?? null; // else the global one, looked up at each connection
    this.#EventSource = ES ?? null;
    if (this.options.transport === "sse") {
      if (typeof (ES ?? globalThis.EventSource) !== "function") {
        throw new TypeError("no EventSource available: pass options.EventSource");
      }
    } else if (typeof (WS ?? globalThis.WebSocket) !== "function") {
      throw new TypeError("no WebSocket available: pass options.WebSocket");
    }
    globalThis.addEventListener?.("online", this.#onOnline);
    if (this.options.autoConnect) {
      // Next microtask, so that listeners attached right after `new` see every state change.
      this.#stopped = false;
      queueMicrotask(() => {
        if (!this.#stopped && !this.#socket && this.#state === "disconnected") this.connect();
      });
    }
  }

  /** `"connecting"`, `"connected"`, `"disconnected"` or `"closed"` (after `close()`). */
  get state() {
    return this.#state;
  }

  /**
   * `"websocket"`, or `"sse"` while on Server-Sent Events (receive-only: `trigger()` throws).
   * A `"transport"` event says when it changes.
   */
  get transport() {
    return this.#transport;
  }

  /** This connection's id while connected, else null. */
  get connectionId() {
    return this.#info?.connection_id ?? null;
  }

  /** The connected user's id (null when anonymous or not connected). */
  get userId() {
    return this.#info?.user_id ?? null;
  }

  /** The gateway node serving the connection, while connected. */
  get node() {
    return this.#info?.node ?? null;
  }

  /** The current WebSocket, for debugging and tests; do not send on it yourself. */
  get _socket() {
    return this.#socket;
  }

  /** Every channel this client holds or is subscribing to, by name. */
  get subscriptions() {
    return new Map(this.#subscriptions);
  }

  /**
   * The subscription to `channel`, if there is one.
   * @param {string} channel
   * @returns {Subscription | undefined}
   */
  channel(channel) {
    return this.#subscriptions.get(channel);
  }

  /**
   * Replace the token (or token provider) used from the next connection on.
   * @param {TidingsOptions["token"]} token
   */
  setToken(token) {
    this.#token = token ?? null;
    this.#refusedToken = null;
  }

  /** Connect (again) after `disconnect()`, a refused token, or with `autoConnect: false`. */
  connect() {
    if (this.#closed) throw new Error("this Tidings client was closed; create a new one");
    this.#stopped = false;
    if (this.#socket || this.#state === "connecting") return;
    this.#clearReconnect();
    this.#open();
  }

  /**
   * Close the connection but keep every subscription and its position: `connect()` later
   * resumes them without a gap (as long as the gateway still has the history).
   */
  disconnect() {
    this.#stopped = true;
    this.#clearReconnect();
    this.#generation++;
    this.#drop(CloseCode.NORMAL, "client disconnected");
    this.#setState("disconnected");
  }

  /** Drop the current connection and connect again right away (e.g. after `setToken`). */
  reconnect() {
    if (this.#closed) throw new Error("this Tidings client was closed; create a new one");
    this.#stopped = false;
    this.#clearReconnect();
    this.#generation++;
    this.#drop(CloseCode.NORMAL, "client reconnecting");
    this.#attempts = 0;
    this.#wsFailures = 0; // WebSocket first again
    this.#open();
  }

  /** Close for good: the connection, the subscriptions and the reconnect loop. */
  close() {
    if (this.#closed) return;
    this.disconnect();
    this.#closed = true;
    for (const subscription of this.#subscriptions.values()) subscription._ended();
    this.#subscriptions.clear();
    globalThis.removeEventListener?.("online", this.#onOnline);
    this.#setState("closed");
  }

  /**
   * Subscribe to a channel (or return the existing subscription to it). Works while
   * disconnected: the subscription is sent once connected.
   * @param {string} channel e.g. `"public.announcements"`, `"user.42"`, `"presence-chat.lobby"`
   * @returns {Subscription}
   */
  subscribe(channel) {
    if (typeof channel !== "string" || !channel) throw new TypeError("channel must be a name");
    if (this.#closed) throw new Error("this Tidings client was closed; create a new one");
    let subscription = this.#subscriptions.get(channel);
    if (subscription) return subscription;
    subscription = new Subscription(this, channel, (frame) => this.#send(frame));
    this.#subscriptions.set(channel, subscription);
    if (this.#transport === "sse") this.#sseChanged();
    else if (this.#state === "connected") this.#send(subscription._subscribeFrame());
    return subscription;
  }

  /**
   * Leave a channel.
   * @param {string | Subscription} channel
   */
  unsubscribe(channel) {
    const name = typeof channel === "string" ? channel : channel.channel;
    const subscription = this.#subscriptions.get(name);
    if (!subscription) return;
    this.#subscriptions.delete(name);
    const held = subscription.state === "subscribed" || subscription.state === "pending";
    if (this.#transport === "sse") this.#sseChanged();
    else if (held && this.#state === "connected") {
      this.#send({ type: "unsubscribe", channel: name });
    }
    subscription._ended();
  }

  // -- Internals ----------------------------------------------------------------------------

  /** @param {"connecting" | "connected" | "disconnected" | "closed"} state */
  #setState(state) {
    if (state === this.#state) return;
    this.#state = state;
    this.emit("state", state);
  }

  /**
   * @param {object} frame
   * @returns {boolean} whether the frame was handed to an open socket
   */
  #send(frame) {
    const socket = this.#socket;
    if (!socket || socket.readyState !== 1 || this.#state !== "connected") return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  async #open() {
    const generation = ++this.#generation;
    this.#setState("connecting");
    let token = null;
    try {
      token = typeof this.#token === "function" ? await this.#token() : this.#token;
    } catch (error) {
      if (generation !== this.#generation) return;
      this.emit("error", new TidingsError(401, `token provider failed: ${describe(error)}`));
      this.#retry(this.#backoff());
      return;
    }
    if (generation !== this.#generation || this.#stopped) return;
    if (token && token === this.#refusedToken) {
      this.#fail(new TidingsError(CloseCode.UNAUTHORIZED, "the token was refused and the token " +
        "provider returned it again; not retrying (call setToken() and connect())"));
      return;
    }
    const sse = this.#useSse();
    this.#setTransport(sse ? "sse" : "websocket");
    const url = new URL(sse ? this.sseUrl : this.url);
    if (token) url.searchParams.set("token", token);
    /** @type {WebSocketLike} */
    let socket;
    try {
      if (sse) {
        const channels = this.#sseChannels();
        if (!channels.length) {
          this.#setState("disconnected"); // an event stream needs a channel: wait for one
          return;
        }
        url.searchParams.set("channels", channels.map((s) => s.channel).join(","));
        const resume = channels.filter((s) => s.position !== null)
          .map((s) => `${s.channel}=${s.position}`).join("~");
        if (resume) url.searchParams.set("lastEventId", resume);
        socket = eventStreamSocket(this.#EventSource ?? globalThis.EventSource, url.toString());
      } else {
        socket = new (this.#WebSocket ?? globalThis.WebSocket)(url.toString());
      }
    } catch (error) {
      if (!sse) this.#wsFailures++;
      const target = sse ? this.sseUrl : this.url;
      this.emit("error", new TidingsError(0, `cannot open ${target}: ${describe(error)}`));
      this.#retry(this.#backoff());
      return;
    }
    this.#socket = socket;
    this.#usedToken = token || null;
    this.#authError = null;
    this.#wasConnected = false;
    socket.onmessage = (event) => {
      if (socket === this.#socket) this.#onFrame(event.data);
    };
    socket.onclose = (event) => {
      if (socket === this.#socket) this.#onClose(event.code, event.reason, event.refusal);
    };
    socket.onerror = () => {}; // a close event follows and says what happened
  }

  /** Whether this connection attempt goes over Server-Sent Events. */
  #useSse() {
    const { transport, sseAfter } = this.options;
    if (transport !== "auto") return transport === "sse";
    const available = typeof (this.#EventSource ?? globalThis.EventSource) === "function";
    return available && this.#wsFailures >= sseAfter;
  }

  /** @param {"websocket" | "sse"} transport */
  #setTransport(transport) {
    if (transport === this.#transport) return;
    this.#transport = transport;
    this.emit("transport", transport);
  }

  /** The subscriptions an event stream carries. */
  #sseChannels() {
    return [...this.#subscriptions.values()].filter((s) => s.state !== "failed");
  }

  /** The channels changed while on SSE: a stream's channels are fixed, so open a new one. */
  #sseChanged() {
    if (this.#sseReopening || this.#stopped) return;
    this.#sseReopening = true;
    queueMicrotask(() => {
      this.#sseReopening = false;
      if (this.#stopped || this.#transport !== "sse" || this.#state === "connecting") return;
      this.#clearReconnect();
      this.#generation++;
      this.#drop(CloseCode.NORMAL, "channels changed");
      this.#open();
    });
  }

  /** @param {string} text */
  #onFrame(text) {
    clearTimeout(this.#pongTimer ?? undefined);
    this.#pongTimer = null;
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return; // not ours to understand; the gateway only sends JSON
    }
    switch (frame.type) {
      case "connected":
        return this.#onConnected(frame.data);
      case "subscribed":
      case "unsubscribed":
      case "event":
        return this.#subscriptions.get(frame.channel)?._receive(frame);
      case "error":
        return this.#onError(frame);
      default:
        return; // "pong", and anything newer than this client
    }
  }

  /** @param {ConnectedInfo} info */
  #onConnected(info) {
    this.#info = info;
    this.#wasConnected = true;
    this.#attempts = 0;
    this.#setState("connected");
    this.#startPing();
    this.emit("connected", info);
    for (const subscription of this.#subscriptions.values()) {
      this.#send(subscription._subscribeFrame());
    }
  }

  /** @param {{channel?: string, data?: {code?: number, message?: string}}} frame */
  #onError(frame) {
    const code = frame.data?.code ?? 0;
    const error = new TidingsError(code, frame.data?.message ?? "error", frame.channel);
    if (!this.#wasConnected && code === ErrorCode.UNAUTHORIZED) {
      this.#authError = error; // reported with the close that follows, if it matters
      return;
    }
    const subscription = frame.channel ? this.#subscriptions.get(frame.channel) : undefined;
    if (subscription) {
      if (subscription._error(error) === "failed") this.#subscriptions.delete(subscription.channel);
    } else if (!(frame.channel && code === ErrorCode.NOT_FOUND)) {
      // (404 on a channel we no longer hold answers an unsubscribe the gateway had refused.)
      this.emit("error", error);
    }
    if (code === ErrorCode.RATE_LIMITED && !frame.channel) this.#resendPendingLater();
  }

  /**
   * A rate-limit error does not say which frame it refused: if it was a subscribe, that
   * subscription would wait forever. Ask again, a little later, for every one still waiting
   * (asking for a channel the gateway already granted is harmless: it confirms again).
   */
  #resendPendingLater() {
    if (this.#resendTimer !== null) return;
    this.#resendTimer = setTimeout(() => {
      this.#resendTimer = null;
      if (this.#state !== "connected") return;
      for (const subscription of this.#subscriptions.values()) {
        if (subscription.state === "pending") this.#send(subscription._subscribeFrame());
      }
    }, Math.max(1000, this.options.minDelay));
  }

  /**
   * @param {number} code
   * @param {string} reason
   * @param {{status: number, channel?: string}} [refusal] an event stream's HTTP refusal
   */
  #onClose(code, reason, refusal) {
    if (!this.#wasConnected && this.#transport === "websocket" && !(code in Disconnects)) {
      this.#wsFailures++; // the upgrade itself failed (blocked, or no gateway): count it
    }
    this.#socket = null;
    this.#stopTimers();
    this.#info = null;
    for (const subscription of this.#subscriptions.values()) subscription._disconnected();
    this.emit("disconnected", { code, reason });
    if (this.#stopped) {
      this.#setState(this.#closed ? "closed" : "disconnected");
      return;
    }
    if (refusal) {
      // An event stream is refused whole, with the HTTP status the WebSocket path would have
      // put in an error frame: a channel's refusal fails that subscription, and the stream is
      // asked again without it; a token's is a refused token (4401).
      const error = new TidingsError(refusal.status, reason, refusal.channel);
      const subscription = refusal.channel ? this.#subscriptions.get(refusal.channel) : undefined;
      if (subscription) {
        const { channel } = subscription;
        if (subscription._error(error) === "failed") this.#subscriptions.delete(channel);
        this.#retry(0);
        return;
      }
      if (refusal.status === ErrorCode.UNAUTHORIZED) {
        this.#authError = error;
        code = CloseCode.UNAUTHORIZED;
      } else if (refusal.status === ErrorCode.BAD_FRAME) {
        this.#fail(error);
        return;
      }
    }
    const dynamic = typeof this.#token === "function";
    const advice = /** @type {Record<number, string | undefined>} */ (Disconnects)[code] ?? "resume";
    if (advice === "no-retry") {
      const error = this.#authError ?? new TidingsError(401, reason || "token refused");
      if (!dynamic) {
        this.#fail(new TidingsError(CloseCode.UNAUTHORIZED, `token refused: ${error.message}`));
        return;
      }
      this.#refusedToken = this.#usedToken;
      this.emit("error", new TidingsError(CloseCode.UNAUTHORIZED, `token refused: ${error.message}`));
      this.#retry(this.#backoff());
      return;
    }
    if (advice === "new-token") {
      if (!dynamic && this.#usedToken) {
        this.#fail(new TidingsError(CloseCode.TOKEN_EXPIRED, "the token expired; give a token " +
          "provider function to refresh it automatically, or call setToken() and connect()"));
        return;
      }
      // Straight back with a fresh token, unless the fresh one was already expired.
      this.#retry(this.#wasConnected ? 0 : this.#backoff());
      return;
    }
    if (advice === "back-off") {
      this.#retry(jitter(this.options.floodDelay));
      return;
    }
    if (advice === "stop") {
      this.#fail(new TidingsError(code, `the gateway closed the connection: ${reason}`));
      return;
    }
    this.#retry(this.#backoff());
  }

  /**
   * Stop reconnecting and report why; `connect()` starts again.
   * @param {TidingsError} error
   */
  #fail(error) {
    this.#stopped = true;
    this.#setState("disconnected");
    this.emit("error", error);
  }

  /** @param {number} delay milliseconds */
  #retry(delay) {
    this.#setState("disconnected");
    this.#clearReconnect();
    const generation = this.#generation;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      if (!this.#stopped && generation === this.#generation) this.#open();
    }, delay);
  }

  #backoff() {
    const { minDelay, maxDelay } = this.options;
    const delay = Math.min(maxDelay, minDelay * 2 ** Math.min(this.#attempts, 30));
    this.#attempts++;
    return jitter(delay);
  }

  #clearReconnect() {
    if (this.#reconnectTimer !== null) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
  }

  #startPing() {
    this.#stopTimers();
    this.#pingTimer = setInterval(() => {
      if (!this.#send({ type: "ping" })) return;
      if (this.#pongTimer === null) {
        this.#pongTimer = setTimeout(() => {
          this.#pongTimer = null;
          // No frame since the ping: the connection is dead but has not noticed. Replace it.
          const socket = this.#socket;
          this.#drop(CloseCode.NORMAL, "no pong");
          if (socket) this.#onClose(CloseCode.GOING_AWAY, "no answer to ping");
        }, this.options.pongTimeout);
      }
    }, this.options.pingInterval);
  }

  #stopTimers() {
    clearInterval(this.#pingTimer ?? undefined);
    clearTimeout(this.#pongTimer ?? undefined);
    clearTimeout(this.#resendTimer ?? undefined);
    this.#pingTimer = this.#pongTimer = this.#resendTimer = null;
  }

  /**
   * Close the current socket without waiting for its close event (which is ignored).
   * @param {number} code
   * @param {string} reason
   */
  #drop(code, reason) {
    const socket = this.#socket;
    this.#stopTimers();
    if (!socket) return;
    this.#socket = null;
    this.#info = null;
    socket.onmessage = socket.onclose = socket.onerror = null;
    try {
      socket.close(code, reason);
    } catch {
      // already closed
    }
    for (const subscription of this.#subscriptions.values()) subscription._disconnected();
  }
}

/**
 * One channel of a {@link Tidings} connection. Create with `rt.subscribe(name)`.
 *
 * Events:
 * - `"message"` (frame: {@link EventFrame}): every event on the channel, presence events included;
 * - an event's own name, e.g. `"client-message"` or `"presence.join"` (data, frame);
 * - `"subscribed"` (`{position, members?, resumed}`): each time the gateway confirms the
 *   subscription, after every (re)connection;
 * - `"presence"` (members: `Map<user_id, user_info>`): presence channels, on the initial list and
 *   on every join and leave;
 * - `"gap"` ({@link TidingsError}, code 410): messages were missed (the position was too old, or
 *   from another broker run); the subscription is live again, so reload the channel's state;
 * - `"error"` ({@link TidingsError}): the subscription was refused (then `state` is `"failed"`)
 *   or a client event was refused; without an `"error"` listener it goes to the connection's.
 * - `"unsubscribed"`: after `unsubscribe()` or `rt.close()`.
 */
export class Subscription extends Emitter {
  /** @type {string} */
  channel;
  /** @type {"public" | "private" | "presence"} */
  kind;
  /**
   * `"pending"` until the gateway confirms (again after every reconnect), `"subscribed"`,
   * `"failed"` when refused, `"unsubscribed"` after `unsubscribe()`.
   * @type {"pending" | "subscribed" | "failed" | "unsubscribed"}
   */
  state = "pending";
  /**
   * The last position seen on this channel (opaque; handed back as `since` on resubscribe).
   * @type {string | null}
   */
  position = null;
  /**
   * Presence channels: who is here, user id -> user info.
   * @type {Map<string, any>}
   */
  members = new Map();

  #client;
  #send;
  /**
   * Client events waiting for the subscription to be confirmed.
   * @type {object[]}
   */
  #queue = [];
  /**
   * The `since` of the subscribe frame in flight (null when subscribing fresh).
   * @type {string | null}
   */
  #since = null;
  /**
   * The channel's latest position when the gateway confirmed the subscription.
   * @type {string | null}
   */
  #frontier = null;
  #seen = new Set();

  /**
   * @param {Tidings} client
   * @param {string} channel
   * @param {(frame: object) => boolean} send
   */
  constructor(client, channel, send) {
    super();
    this.#client = client;
    this.#send = send;
    this.channel = channel;
    this.kind = channelKind(channel);
  }

  /** Whether the channel is a presence channel. */
  get isPresence() {
    return this.kind === "presence";
  }

  /**
   * Send a client event to the channel's other subscribers (never back to you). Only on
   * private and presence channels; the name must start with `client-`. Queued while the
   * subscription is not confirmed; delivered at most once.
   * @param {string} event e.g. `"client-typing"`
   * @param {any} [data]
   * @returns {boolean} true when sent now, false when queued
   */
  trigger(event, data = null) {
    if (typeof event !== "string" || !event.startsWith("client-")) {
      throw new TypeError(`client event names start with "client-", got ${JSON.stringify(event)}`);
    }
    if (this.#client.transport === "sse") {
      throw new Error(`cannot trigger on ${this.channel}: the client is on Server-Sent Events, ` +
        "which only receive (WebSocket could not connect; rt.reconnect() tries it again)");
    }
    if (this.kind === "public") {
      throw new TypeError(`client events go on private or presence channels, not ${this.channel}`);
    }
    if (this.state === "failed" || this.state === "unsubscribed") {
      throw new Error(`cannot trigger on ${this.channel}: the subscription is ${this.state}`);
    }

    const frame = { type: "event", channel: this.channel, event, data };
    if (this.state === "subscribed" && this.#send(frame)) return true;
    this.#queue.push(frame);
    return false;
  }

  /** Leave the channel. */
  unsubscribe() {
    this.#client.unsubscribe(this);
  }

  // -- Called by Tidings --------------------------------------------------------------------

  /** @internal The subscribe frame for this (re)connection. */
  _subscribeFrame() {
    this.state = "pending";
    this.#since = this.position;
    return this.position === null
      ? { type: "subscribe", channel: this.channel }
      : { type: "subscribe", channel: this.channel, since: this.position };
  }

  /**
   * @internal
   * @param {any} frame a "subscribed", "unsubscribed" or "event" frame, as parsed from JSON
   */
  _receive(frame) {
    if (this.state === "unsubscribed" || this.state === "failed") return;
    if (frame.type === "subscribed") this.#subscribed(frame.data ?? {});
    else if (frame.type === "event") this.#event(frame);
  }

  /**
   * @internal An error frame about this channel.
   * @param {TidingsError} error
   * @returns {"gap" | "failed" | "error"}
   */
  _error(error) {
    if (error.code === ErrorCode.GONE) {
      // The subscription is live but messages were missed. If none arrived since, continue
      // from where the gateway stood when it confirmed the subscription.
      if (this.position === this.#since && this.#frontier !== null) this.position = this.#frontier;
      this.emit("gap", error);
      return "gap";
    }
    if (this.state === "pending" && error.code === ErrorCode.BAD_FRAME && this.#since !== null) {
      // The gateway does not understand our position (another server version?): subscribe
      // afresh, and say that messages may have been missed.
      this.position = null;
      this.#send(this._subscribeFrame());
      this.emit("gap", error);
      return "gap";
    }
    const refused = this.state === "pending";
    if (refused) {
      this.state = "failed";
      this.#queue = [];
    }
    if (!this.emit("error", error)) this.#client.emit("error", error);
    return refused ? "failed" : "error";
  }

  /** @internal The connection dropped: wait for the next confirmation. */
  _disconnected() {
    if (this.state === "subscribed") this.state = "pending";
  }

  /** @internal */
  _ended() {
    if (this.state === "unsubscribed") return;
    this.state = "unsubscribed";
    this.#queue = [];
    this.emit("unsubscribed");
  }

  /** @param {{position?: string | null, members?: {user_id: string, user_info: any}[]}} data */
  #subscribed(data) {
    const resumed = this.#since !== null;
    this.#frontier = data.position ?? null;
    // Fresh: the confirmation's position says where "now" is, even before any message. A resume
    // keeps its own position: the replay that follows moves it forward message by message.
    if (!resumed && this.#frontier !== null) this.position = this.#frontier;
    this.state = "subscribed";
    if (Array.isArray(data.members)) {
      this.members = new Map(data.members.map((member) => [member.user_id, member.user_info]));
    }
    this.emit("subscribed", { position: this.position, members: data.members, resumed });
    if (Array.isArray(data.members)) this.emit("presence", this.members);
    const queued = this.#queue;
    this.#queue = [];
    for (const frame of queued) {
      if (this.state !== "subscribed" || !this.#send(frame)) this.#queue.push(frame);
    }
  }

  /** @param {EventFrame} frame */
  #event(frame) {
    if (frame.id !== undefined) {
      if (this.#seen.has(frame.id)) return; // a redelivery
      this.#seen.add(frame.id);
      if (this.#seen.size > SEEN_IDS) this.#seen.delete(this.#seen.values().next().value);
    }
    if (frame.position != null) this.position = frame.position;
    let presenceChanged = false;
    if (frame.event === "presence.join" && frame.data) {
      this.members.set(frame.data.user_id, frame.data.user_info);
      presenceChanged = true;
    } else if (frame.event === "presence.leave" && frame.data) {
      presenceChanged = this.members.delete(frame.data.user_id);
    }
    this.emit("message", frame);
    if (!LIFECYCLE.has(frame.event)) this.emit(frame.event, frame.data, frame);
    if (presenceChanged) this.emit("presence", this.members);
  }
}

/**
 * A delay between half of `delay` and all of it, so clients do not reconnect in lockstep.
 * @param {number} delay
 */
function jitter(delay) {
  return delay / 2 + Math.random() * (delay / 2);
}

/**
 * An EventSource dressed as a WebSocket (`WebSocketLike`): each event's data is a WebSocket
 * frame of the gateway's protocol; the stream's `disconnect` event, or a failure, is its close.
 * It reconnects only through the client (which resumes from its positions), never on its own.
 * Pings are answered here: the gateway's heartbeats keep the stream alive, and the browser
 * notices a stream that ends.
 * @param {new (url: string) => EventSourceLike} EventSourceClass
 * @param {string} url
 * @returns {WebSocketLike}
 */
function eventStreamSocket(EventSourceClass, url) {
  const source = new EventSourceClass(url);
  /** @type {WebSocketLike} */
  const socket = {
    readyState: 0,
    onmessage: null,
    onclose: null,
    onerror: null,
    send(text) {
      if (JSON.parse(text).type === "ping") {
        queueMicrotask(() => socket.onmessage?.({ data: '{"type":"pong"}' }));
      } // subscribe and unsubscribe are the stream's URL; client events cannot go this way
    },
    close() {
      socket.readyState = 3;
      source.close();
    },
  };
  /**
   * @param {number} code
   * @param {string} reason
   * @param {{status: number, channel?: string}} [refusal]
   */
  const end = (code, reason, refusal) => {
    if (socket.readyState === 3) return;
    socket.close();
    socket.onclose?.({ code, reason, refusal });
  };
  // A stream that fails before its first event was refused, or never reached the gateway. The
  // browser does not show the page why: ask once more with fetch, which reads the refusal.
  const probe = () => {
    source.close();
    if (typeof globalThis.fetch !== "function") return end(1006, "the event stream failed");
    globalThis.fetch(url, { headers: { accept: "text/event-stream" } }).then(async (response) => {
      if (response.ok) {
        response.body?.cancel();
        return end(1006, "the event stream failed");
      }
      const body = await response.json().catch(() => ({}));
      end(1006, body.error ?? `refused: HTTP ${response.status}`,
        { status: response.status, channel: body.channel });
    }, () => end(1006, "the event stream failed"));
  };
  /** @param {{data?: unknown}} event */
  const deliver = (event) => {
    if (socket.readyState === 3 || typeof event.data !== "string") return;
    socket.readyState = 1;
    socket.onmessage?.({ data: event.data });
  };
  source.addEventListener("message", deliver);
  source.addEventListener("connected", deliver);
  source.addEventListener("subscribed", deliver);
  source.addEventListener("error", (event) => {
    // The gateway's error events carry data; the browser's own (the stream failed) do not.
    if (typeof event.data === "string") deliver(event);
    else if (socket.readyState === 0) probe();
    else end(1006, "the event stream ended");
  });
  source.addEventListener("disconnect", (event) => {
    const { code, reason } = JSON.parse(event.data);
    end(code, reason);
  });
  return socket;
}

/** @param {string} url the WebSocket URL */
function sseUrlBeside(url) {
  const resolved = new URL(url);
  resolved.protocol = resolved.protocol === "wss:" ? "https:" : "http:";
  resolved.pathname = resolved.pathname.replace(/\/?(ws\/?)?$/, "/sse");
  resolved.search = "";
  return resolved.toString();
}

/** @param {string | URL} url */
function resolveHttpUrl(url) {
  const base = globalThis.location?.href;
  return (base ? new URL(url, base) : new URL(url)).toString();
}

/** @param {string | URL | undefined} url */
function resolveUrl(url) {
  const base = globalThis.location?.href;
  if (url === undefined) {
    if (!base) throw new TypeError("give the gateway's WebSocket URL, e.g. ws://127.0.0.1:6001/ws");
    url = "/ws";
  }
  const resolved = base ? new URL(url, base) : new URL(url);
  if (resolved.protocol === "http:") resolved.protocol = "ws:";
  else if (resolved.protocol === "https:") resolved.protocol = "wss:";
  return resolved.toString();
}

/**
 * What an exception says, for an error message: its `message`, or itself.
 * @param {unknown} error
 */
function describe(error) {
  return /** @type {{message?: unknown} | null | undefined} */ (error)?.message ?? error;
}
