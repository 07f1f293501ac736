// Drives pusher-js (and laravel-echo on top of it) for tests/pusher_js: one JSON command per line on
// stdin, one JSON report per line on stdout. Nothing here speaks the protocol itself: every frame
// on the wire is pusher-js's own.
import readline from "node:readline";
import Pusher from "pusher-js";
import Echo from "laravel-echo";

const say = (report) => process.stdout.write(JSON.stringify(report) + "\n");
let pusher = null;
let echo = null;
const echoChannels = new Map();

function options(c) {
  const base = {
    wsHost: c.host,
    wsPort: c.port,
    forceTLS: false,
    enabledTransports: ["ws"],
    disableStats: true,
    cluster: "mt1",
    activityTimeout: c.activityTimeout ?? 120000,
  };
  if (c.authEndpoint) {
    base.channelAuthorization = { endpoint: c.authEndpoint, transport: "ajax", params: c.params ?? {} };
  }
  if (c.userAuthEndpoint) {
    base.userAuthentication = { endpoint: c.userAuthEndpoint, transport: "ajax", params: c.params ?? {} };
  }
  return base;
}

function watch(client) {
  client.connection.bind("state_change", (s) =>
    say({ type: "state", current: s.current, socket_id: client.connection.socket_id ?? null }));
  client.connection.bind("error", (e) => say({ type: "error", error: e?.error?.data ?? e?.data ?? String(e?.type) }));
  client.bind_global((event, data) => say({ type: "global", event, data }));
}

const commands = {
  connect(c) {
    pusher = new Pusher(c.key, options(c));
    watch(pusher);
  },
  subscribe(c) {
    const channel = pusher.subscribe(c.channel);
    channel.bind_global((event, data, metadata) => {
      const report = { type: "event", channel: c.channel, event, data, user_id: metadata?.user_id ?? null };
      if (event === "pusher:subscription_succeeded" && channel.members) {
        report.members = Object.keys(channel.members.members).sort();
        report.me = channel.members.me?.id ?? null;
      }
      say(report);
    });
    // bind_global does not pass the metadata (the sender's user_id): bind these by name.
    for (const name of c.events ?? []) {
      channel.bind(name, (data, metadata) =>
        say({ type: "bound", channel: c.channel, event: name, data, user_id: metadata?.user_id ?? null }));
    }
  },
  unsubscribe(c) { pusher.unsubscribe(c.channel); say({ type: "unsubscribed", channel: c.channel }); },
  trigger(c) { say({ type: "triggered", ok: pusher.channel(c.channel).trigger(c.event, c.data) }); },
  signin() {
    pusher.user.bind_global((event, data) => say({ type: "user_event", event, data }));
    pusher.signin();
  },
  user() {
    const channel = pusher.user.serverToUserChannel;
    say({ type: "user", data: pusher.user.user_data ?? null, subscribed: channel?.subscribed ?? false });
  },
  disconnect() { (pusher ?? echo?.connector?.pusher)?.disconnect(); },
  echo(c) {
    echo = new Echo({ broadcaster: "pusher", key: c.key, Pusher, ...options(c),
                      authEndpoint: c.authEndpoint, auth: { params: c.params ?? {} } });
    watch(echo.connector.pusher);
  },
  join(c) {
    const channel = echo.join(c.channel)
      .here((users) => say({ type: "here", users: users.map((u) => u.name).sort() }))
      .joining((user) => say({ type: "joining", user: user.name }))
      .leaving((user) => say({ type: "leaving", user: user.name }))
      .listenForWhisper(c.whisper ?? "typing", (e) => say({ type: "whisper", data: e }))
      .error((e) => say({ type: "echo_error", error: e }));
    echoChannels.set(c.channel, channel);
  },
  whisper(c) { echoChannels.get(c.channel).whisper(c.event, c.data); say({ type: "whispered" }); },
  listen(c) {
    echo.channel(c.channel)
      .listen(c.event, (e) => say({ type: "echo_event", data: e }))
      .subscribed(() => say({ type: "echo_subscribed", channel: c.channel }));
  },
  exit() { process.exit(0); },
};

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  try {
    commands[command.do](command);
  } catch (error) {
    say({ type: "failed", command: command.do, error: String(error) });
  }
});
say({ type: "ready" });
