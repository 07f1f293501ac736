// How applications use the client, as TypeScript: this file must compile (tsc --noEmit -p js).
// It is never run; it imports the package by its name, as an application would.
import {
  channelKind,
  CloseCode,
  Disconnects,
  ErrorCode,
  Tidings,
  TidingsError,
  type ConnectionState,
  type EventFrame,
  type PresenceMember,
  type Subscription,
  type TidingsOptions,
  type TokenProvider,
} from "@tidings/client";

interface Order {
  id: number;
  status: "placed" | "shipped";
}

interface ChatEvents {
  "client-message": { name: string; text: string };
  "client-typing": { name: string };
}

export function connect(fetchToken: () => Promise<string>): Tidings {
  const provider: TokenProvider = async () => await fetchToken();
  const options: TidingsOptions = { token: provider, minDelay: 1000, autoConnect: false };
  const rt = new Tidings("wss://realtime.example.com/ws", options);

  const off = rt.on("state", (state) => {
    const now: ConnectionState = state;
    console.log(now, rt.state === "connected");
  });
  off();
  rt.on("connected", ({ connection_id, user_id, node }) => {
    console.log(connection_id, user_id, node);
  });
  rt.once("disconnected", ({ code, reason }) => {
    if ((Disconnects[code] ?? "resume") === "stop") console.warn(reason);
    if (code === CloseCode.TOKEN_EXPIRED) rt.setToken(provider);
  });
  rt.on("error", (error) => console.warn(error.code, error.message, error.channel));
  rt.on("transport", (transport) => {
    if (transport === "sse") console.warn("receive-only over", rt.sseUrl, rt.transport);
  });
  new Tidings("/ws", { transport: "sse", sseUrl: "/sse", EventSource: globalThis.EventSource });

  // Untyped channel: any event name, any data.
  const news = rt.subscribe("public.announcements");
  news.on("announcement", (data, frame) => console.log(data.message, frame.id, frame.position));
  news.on("message", (frame: EventFrame) => console.log(frame.event, frame.timestamp));
  news.on("gap", (error) => console.log(error.code === ErrorCode.GONE));

  // Typed channel: listeners and client events know their data.
  const orders = rt.subscribe<{ "order.updated": Order }>("user.42");
  orders.on("order.updated", (order, frame) => {
    const status: "placed" | "shipped" = order.status;
    const again: Order = frame.data;
    console.log(status, again.id);
  });
  orders.on("subscribed", ({ position, resumed }) => console.log(position, resumed));

  const room: Subscription<ChatEvents> = rt.subscribe<ChatEvents>("presence-chat.lobby");
  room.on("client-message", ({ name, text }, frame) => console.log(frame.user_id, name, text));
  room.on("presence", (members) => console.log([...members.keys()]));
  room.on("presence.join", (member: PresenceMember) => {
    console.log(member.user_id, member.user_info);
  });
  const sent: boolean = room.trigger("client-typing", { name: "Ann" });
  console.log(sent, room.state, room.kind, room.isPresence, room.members.size, room.position);

  rt.channel("user.42")?.unsubscribe();
  rt.unsubscribe(room);
  for (const [name, subscription] of rt.subscriptions) console.log(name, subscription.state);
  console.log(channelKind("presence-chat.lobby") === "presence", rt.connectionId, rt.url);
  rt.connect();
  return rt;
}

export function errors(error: unknown): number | undefined {
  return error instanceof TidingsError ? error.code : undefined;
}

// A runtime without a global WebSocket passes its own constructor (here the global one).
export const withConstructor = (): Tidings =>
  new Tidings("ws://127.0.0.1:6001/ws", { WebSocket, autoConnect: false, pingInterval: 5000 });
