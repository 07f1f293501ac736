// Misuses the declarations must refuse: each line below is a compile error, and tsc fails on a
// `@ts-expect-error` that has none (so a declaration grown too loose fails the check).
import { CloseCode, Tidings, channelKind } from "@tidings/client";

export function misuse(rt: Tidings): void {
  // @ts-expect-error: options are checked (milliseconds are numbers)
  new Tidings("ws://127.0.0.1:6001/ws", { pingInterval: "25s" });
  // @ts-expect-error: a transport is "auto", "websocket" or "sse"
  new Tidings("ws://127.0.0.1:6001/ws", { transport: "long-polling" });
  // @ts-expect-error: no such option
  new Tidings("ws://127.0.0.1:6001/ws", { reconnect: true });
  // @ts-expect-error: a connection has no "message" event (subscriptions do)
  rt.on("message", () => {});
  // @ts-expect-error: the state listener receives a state, not a number
  rt.on("state", (state: number) => console.log(state));
  // @ts-expect-error: client event names start with "client-"
  rt.subscribe("presence-chat.lobby").trigger("typing");

  const orders = rt.subscribe<{ "order.updated": { id: number } }>("user.42");
  // @ts-expect-error: the channel's data is typed
  orders.on("order.updated", (order) => order.status);
  // @ts-expect-error: an event the channel's map does not name
  orders.on("order.deleted", () => {});

  const chat = rt.subscribe<{ "client-message": { text: string } }>("presence-chat.lobby");
  // @ts-expect-error: client event data is typed too
  chat.trigger("client-message", { text: 42 });
  // @ts-expect-error: the state is read-only
  chat.state = "subscribed";
  // @ts-expect-error: constants are read-only
  CloseCode.NORMAL = 1001;
  // @ts-expect-error: channel names are strings
  channelKind(42);
}
