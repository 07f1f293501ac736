/**
 * Types of the tidings browser client (`client.js`): one WebSocket to a tidings gateway, any
 * number of channels on it.
 *
 * Written by hand and held to the JavaScript by `tsc` (js/test/conformance.ts: the module
 * `client.js` satisfies every declaration here, and everything it exports is declared). See
 * docs/client.md for the behaviour behind each name.
 *
 * ```ts
 * import { Tidings } from "@tidings/client";
 *
 * interface Order { id: number; status: string }
 * const rt = new Tidings("wss://realtime.example.com/ws", { token: async () => fetchToken() });
 * rt.subscribe<{ "order.updated": Order }>("user.42")
 *   .on("order.updated", (order, frame) => console.log(order.status, frame.position));
 * ```
 *
 * @module
 */

// -- Constants --------------------------------------------------------------------------------

/** Close codes the gateway uses, by name. */
export declare const CloseCode: Readonly<{
  NORMAL: 1000;
  GOING_AWAY: 1001;
  PROTOCOL_ERROR: 1002;
  INVALID_DATA: 1007;
  MESSAGE_TOO_BIG: 1009;
  INTERNAL_ERROR: 1011;
  IDLE: 4000;
  TOKEN_EXPIRED: 4001;
  SLOW_CONSUMER: 4008;
  FLOODING: 4029;
  UNAUTHORIZED: 4401;
}>;
/** One of the close codes of {@link CloseCode}. */
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/**
 * What the client does after a close: `"resume"` reconnect with backoff and resume;
 * `"back-off"` wait `floodDelay` first; `"new-token"` reconnect with a fresh token; `"no-retry"`
 * never the same token again; `"stop"` do not reconnect on its own.
 */
export type DisconnectAdvice = "resume" | "back-off" | "new-token" | "no-retry" | "stop";

/**
 * The gateway's table of close codes and what to do after each. A code not listed (1006, a
 * proxy's) means `"resume"`: `Disconnects[code] ?? "resume"`.
 */
export declare const Disconnects: Readonly<
  DisconnectTable & { [code: number]: DisconnectAdvice | undefined }
>;

/** The rows of {@link Disconnects}: each close code the gateway uses and its advice. */
export interface DisconnectTable {
  1000: "resume";
  1001: "resume";
  1002: "stop";
  1007: "stop";
  1009: "resume";
  1011: "resume";
  4000: "resume";
  4001: "new-token";
  4008: "resume";
  4029: "back-off";
  4401: "no-retry";
}

/** Error codes of the gateway's error frames, by name. */
export declare const ErrorCode: Readonly<{
  BAD_FRAME: 400;
  UNAUTHORIZED: 401;
  FORBIDDEN: 403;
  NOT_FOUND: 404;
  GONE: 410;
  TOO_LARGE: 413;
  RATE_LIMITED: 429;
}>;
/** One of the error codes of {@link ErrorCode}. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

// -- Values -----------------------------------------------------------------------------------

/** The kind of a channel, from its name: `presence-*`, `private-*` / `user.*`, or the rest. */
export type ChannelKind = "presence" | "private" | "public";

/** The kind of a channel, from its name alone (the gateway decides the same way). */
export declare function channelKind(name: string): ChannelKind;

/**
 * An error the gateway reported (error frame or close code) or the client detected. `code` is
 * the protocol error code (400, 401, 403, 404, 410, 413, 429, 503, ...; 0 when the socket could
 * not even be created) or, for errors that ended a connection, the close code (4001, 4401, ...).
 */
export declare class TidingsError extends Error {
  constructor(code: number, message: string, channel?: string);
  /** `"TidingsError"`. */
  name: string;
  code: number;
  /** The channel the error is about, if it is about one. */
  channel: string | undefined;
}

/** What the gateway says about a connection once it accepted it (`"connected"`). */
export interface ConnectedInfo {
  /**
   * This connection's id: pass it as `exclude` when broadcasting so that the action's author
   * does not receive its own echo.
   */
  connection_id: string;
  /** The token's user, or null when anonymous. */
  user_id: string | null;
  /** The gateway node serving this connection. */
  node: string;
}

/** How a connection ended (`"disconnected"`): the WebSocket close code and reason. */
export interface DisconnectedInfo {
  code: number;
  reason: string;
}

/** A member of a presence channel, as `presence.join` / `presence.leave` events carry it. */
export interface PresenceMember<Info = any> {
  user_id: string;
  /** The `info` claim of the member's token (null when it had none). */
  user_info: Info;
}

/** An event on a channel, as `"message"` listeners receive it. */
export interface EventFrame<Data = any> {
  type: "event";
  /** Unique message id. */
  id: string;
  channel: string;
  event: string;
  /** Any JSON. */
  data: Data;
  /** Seconds since the epoch, when the message was published. */
  timestamp: number;
  /** Opaque resume position; absent on presence events. */
  position?: string;
  /** Client events only: the verified user id of the connection that sent it. */
  user_id?: string;
}

/** A subscription's confirmation by the gateway (`"subscribed"`, after every (re)connection). */
export interface SubscribedInfo {
  /** The subscription's position after the confirmation (opaque), or null. */
  position: string | null;
  /** Presence channels: the full member list. */
  members: PresenceMember[] | undefined;
  /** Whether the subscription resumed from a position (a reconnect), rather than fresh. */
  resumed: boolean;
}

// -- Options ----------------------------------------------------------------------------------

/**
 * A function (may be async) called before every connection attempt, so that it can return a
 * fresh token after one expired. Null or undefined: connect anonymously.
 */
export type TokenProvider = () => string | null | undefined | Promise<string | null | undefined>;

/** A token, a token provider, or none (anonymous: public channels only). */
export type Token = string | TokenProvider | null | undefined;

/**
 * What the client needs of a WebSocket: the browser's, Node's (22 and later), Deno's and the
 * `ws` package's all have it.
 */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
}

/** A WebSocket constructor, for `options.WebSocket`. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** What the client needs of an EventSource (the browser's has it). */
export interface EventSourceLike {
  addEventListener(type: string, listener: (event: any) => void): void;
  close(): void;
}

/** An EventSource constructor, for `options.EventSource`. */
export type EventSourceConstructor = new (url: string) => EventSourceLike;

/** How the client reaches the gateway: WebSocket, or Server-Sent Events (receive-only). */
export type Transport = "websocket" | "sse";

/** The options of `new Tidings(url, options)`; every one is optional. */
export interface TidingsOptions {
  /** A connection token, or a function returning one before every connection attempt. */
  token?: Token;
  /** Milliseconds between pings (25000). */
  pingInterval?: number;
  /** Milliseconds to wait for any frame after a ping before replacing the connection (10000). */
  pongTimeout?: number;
  /** First reconnect delay in milliseconds, doubled each attempt, jittered (500). */
  minDelay?: number;
  /** Cap of the reconnect delay in milliseconds (10000). */
  maxDelay?: number;
  /** Delay before reconnecting after a close for flooding, 4029 (30000). */
  floodDelay?: number;
  /** Connect in the constructor (true); else call `connect()`. */
  autoConnect?: boolean;
  /** The WebSocket constructor (default: the global `WebSocket`). */
  WebSocket?: WebSocketConstructor;
  /**
   * `"auto"` (default): WebSocket, and Server-Sent Events (receive-only) after `sseAfter`
   * WebSocket attempts in a row failed to connect; `"websocket"`: never SSE; `"sse"`: SSE only.
   */
  transport?: "auto" | Transport;
  /** WebSocket attempts that fail to connect, in a row, before `"auto"` falls back to SSE (3). */
  sseAfter?: number;
  /** The EventSource constructor (default: the global `EventSource`; none: no fallback). */
  EventSource?: EventSourceConstructor;
  /** The gateway's SSE URL (default: `/sse` beside the WebSocket URL, `http(s)://`). */
  sseUrl?: string | URL;
}

/** The options as the constructor resolved them (`rt.options`). */
export interface ResolvedOptions {
  pingInterval: number;
  pongTimeout: number;
  minDelay: number;
  maxDelay: number;
  floodDelay: number;
  autoConnect: boolean;
  transport: "auto" | Transport;
  sseAfter: number;
}

// -- Events -----------------------------------------------------------------------------------

/** A connection's state. */
export type ConnectionState = "connecting" | "connected" | "disconnected" | "closed";

/** A connection's events and the arguments their listeners receive. */
export interface TidingsEvents {
  state: [state: ConnectionState];
  connected: [info: ConnectedInfo];
  disconnected: [close: DisconnectedInfo];
  error: [error: TidingsError];
  /** The client moved to another transport (`"sse"`: WebSocket could not connect). */
  transport: [transport: Transport];
}

/** A subscription's state. */
export type SubscriptionState = "pending" | "subscribed" | "failed" | "unsubscribed";

/**
 * A subscription's own events (not channel events) and the arguments their listeners receive.
 * An application event with one of these names still reaches `"message"` listeners, but not by
 * its name.
 */
export interface SubscriptionEvents {
  /** Every event on the channel, presence events included. */
  message: [frame: EventFrame];
  /** The gateway confirmed the subscription (again after every reconnect). */
  subscribed: [info: SubscribedInfo];
  /** After `unsubscribe()` or `close()`. */
  unsubscribed: [];
  /** Presence channels: the member list, initially and after every join and leave. */
  presence: [members: Map<string, any>];
  /** Messages were missed (code 410): reload the channel's state. */
  gap: [error: TidingsError];
  /** The subscription was refused (state `"failed"`) or a client event was refused. */
  error: [error: TidingsError];
}

/** The names of a subscription's own events. */
export type LifecycleEvent = keyof SubscriptionEvents;

/** Presence events, on presence channels. */
export type PresenceEvent = "presence.join" | "presence.leave";

/**
 * The events of a channel, by name, and the type of their `data`: what
 * `rt.subscribe<Events>(channel)` takes to type its listeners and `trigger`. Without one, any
 * name and any data.
 */
export type EventMap = Record<string, any>;

/** Removes the listener it was returned for. */
export type Unsubscribe = () => void;

// -- Classes ----------------------------------------------------------------------------------

/** A connection to a tidings gateway. Events: see {@link TidingsEvents}. */
export declare class Tidings {
  /**
   * @param url The gateway's WebSocket URL, e.g. `ws://127.0.0.1:6001/ws`. `http(s)://` URLs
   *   become `ws(s)://`; relative URLs are resolved against the page. Default in a browser:
   *   `/ws` on the page's own host (elsewhere it is required: a `TypeError` without it).
   * @throws {TypeError} when there is no URL outside a browser, no WebSocket constructor (no
   *   EventSource one with `transport: "sse"`), or an unknown `transport`.
   */
  constructor(url?: string | URL, options?: TidingsOptions);
  /** The resolved `ws(s)://` URL. */
  readonly url: string;
  readonly options: Readonly<ResolvedOptions>;
  /** The resolved `http(s)://` URL of the gateway's Server-Sent Events. */
  readonly sseUrl: string;
  /** `"websocket"`, or `"sse"` while on Server-Sent Events (then `trigger()` throws). */
  readonly transport: Transport;
  /** `"connecting"`, `"connected"`, `"disconnected"` or `"closed"` (after `close()`). */
  readonly state: ConnectionState;
  /** This connection's id while connected, else null. */
  readonly connectionId: string | null;
  /** The connected user's id (null when anonymous or not connected). */
  readonly userId: string | null;
  /** The gateway node serving the connection, while connected. */
  readonly node: string | null;
  /** The current WebSocket, for debugging and tests; do not send on it yourself. */
  readonly _socket: WebSocketLike | null;
  /** Every channel this client holds or is subscribing to, by name (a copy). */
  readonly subscriptions: Map<string, Subscription>;

  /**
   * Subscribe to a channel, or return the existing subscription to it. Works while
   * disconnected: the subscription is sent once connected. The type parameter names the
   * channel's events and their data (types only: nothing is checked at run time).
   * @throws {TypeError} when `channel` is not a non-empty string.
   * @throws {Error} after `close()`.
   */
  subscribe<Events extends EventMap = EventMap>(channel: string): Subscription<Events>;
  /** Leave a channel. */
  unsubscribe(channel: string | Subscription<any>): void;
  /** The subscription to `channel`, if there is one. */
  channel<Events extends EventMap = EventMap>(channel: string): Subscription<Events> | undefined;
  /** Replace the token (or token provider) used from the next connection on. */
  setToken(token: Token): void;
  /**
   * Connect (again) after `disconnect()`, a refused token, or with `autoConnect: false`.
   * @throws {Error} after `close()`.
   */
  connect(): void;
  /** Close the connection but keep every subscription and its position, to resume later. */
  disconnect(): void;
  /**
   * Drop the current connection and connect again right away (e.g. after `setToken`).
   * @throws {Error} after `close()`.
   */
  reconnect(): void;
  /** Close for good: the connection, the subscriptions and the reconnect loop. */
  close(): void;

  /** Listen to an event; returns a function that removes the listener. */
  on<Name extends keyof TidingsEvents>(
    event: Name,
    listener: (...args: TidingsEvents[Name]) => void,
  ): Unsubscribe;
  /** Listen to the next occurrence of an event only. */
  once<Name extends keyof TidingsEvents>(
    event: Name,
    listener: (...args: TidingsEvents[Name]) => void,
  ): Unsubscribe;
  /** Remove a listener, or every listener of the event when none is given. */
  off<Name extends keyof TidingsEvents>(
    event: Name,
    listener?: (...args: TidingsEvents[Name]) => void,
  ): void;
  /** How many listeners the event has. */
  listenerCount(event: keyof TidingsEvents): number;
}

/**
 * One channel of a {@link Tidings} connection; create with `rt.subscribe(name)`. Events: the
 * subscription's own ({@link SubscriptionEvents}), presence events, and the channel's events by
 * name, whose listeners receive `(data, frame)`.
 */
export declare class Subscription<Events extends EventMap = EventMap> {
  /** Made by `Tidings.subscribe`, not by applications. */
  private constructor(client: Tidings, channel: string, send: (frame: object) => boolean);
  readonly channel: string;
  readonly kind: ChannelKind;
  /**
   * `"pending"` until the gateway confirms (again after every reconnect), `"subscribed"`,
   * `"failed"` when refused, `"unsubscribed"` after `unsubscribe()`.
   */
  readonly state: SubscriptionState;
  /** The last position seen on this channel (opaque), or null. */
  readonly position: string | null;
  /** Presence channels: who is here, user id to user info (a new Map after each resubscribe). */
  readonly members: Map<string, any>;
  /** Whether the channel is a presence channel. */
  readonly isPresence: boolean;

  /**
   * Send a client event to the channel's other subscribers (never back to you). Only on private
   * and presence channels; the name starts with `client-`. Queued while the subscription is not
   * confirmed.
   * @returns true when sent now, false when queued.
   * @throws {TypeError} for a name not starting with `client-`, or on a public channel.
   * @throws {Error} when the subscription failed or ended, or the client is on SSE.
   */
  trigger<Name extends keyof Events & `client-${string}`>(
    event: Name,
    data?: Events[Name],
  ): boolean;
  /** Leave the channel. */
  unsubscribe(): void;

  /** Listen to a subscription event; returns a function that removes the listener. */
  on<Name extends LifecycleEvent>(
    event: Name,
    listener: (...args: SubscriptionEvents[Name]) => void,
  ): Unsubscribe;
  /** Listen to a presence event. */
  on(
    event: PresenceEvent,
    listener: (member: PresenceMember, frame: EventFrame<PresenceMember>) => void,
  ): Unsubscribe;
  /** Listen to a channel event by name. */
  on<Name extends Exclude<keyof Events & string, LifecycleEvent>>(
    event: Name,
    listener: (data: Events[Name], frame: EventFrame<Events[Name]>) => void,
  ): Unsubscribe;

  /** Listen to the next occurrence of a subscription event only. */
  once<Name extends LifecycleEvent>(
    event: Name,
    listener: (...args: SubscriptionEvents[Name]) => void,
  ): Unsubscribe;
  /** Listen to the next presence event only. */
  once(
    event: PresenceEvent,
    listener: (member: PresenceMember, frame: EventFrame<PresenceMember>) => void,
  ): Unsubscribe;
  /** Listen to the next channel event of that name only. */
  once<Name extends Exclude<keyof Events & string, LifecycleEvent>>(
    event: Name,
    listener: (data: Events[Name], frame: EventFrame<Events[Name]>) => void,
  ): Unsubscribe;

  /** Remove a listener, or every listener of the event when none is given. */
  off(event: LifecycleEvent | PresenceEvent | (keyof Events & string), listener?: Function): void;
  /** How many listeners the event has. */
  listenerCount(event: LifecycleEvent | PresenceEvent | (keyof Events & string)): number;
}
