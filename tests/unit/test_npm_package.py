"""The browser client as an npm package (js/, ADR 0026): its types, its files, its version, and
what an application gets from ``npm install``.

One source: the package's client.js is src/adapters/web/static/client.js, copied in at pack time;
its declarations (js/client.d.ts) are written by hand and held to that JavaScript by ``tsc``.
The browser half (Chromium importing the client cross-origin) is tests/e2e/test_cross_origin.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import tidings
from tests.support.npm import (
    CLIENT_JS,
    NAME,
    PACKAGE,
    ROOT,
    checked,
    install,
    pack,
    packed_files,
    run,
    tool,
    tsc,
)

PACKED = {"LICENSE", "README.md", "client.d.ts", "client.js", "package.json"}


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack(tmp_path_factory.mktemp("pack"))


@pytest.fixture(scope="module")
def app(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway application with the package installed from the tarball; its directory."""
    project = tmp_path_factory.mktemp("app")
    install(tarball, project)
    return project


# -- Types ----------------------------------------------------------------------------------------


def test_tsc_holds_the_declarations_to_client_js_and_compiles_usage_but_not_misuse() -> None:
    """js/tsconfig.json: client.js checked from its JSDoc; test/conformance.ts (client.js
    satisfies client.d.ts, and exports nothing undeclared); test/usage.ts compiles;
    test/misuse.ts has an error on every line marked ``@ts-expect-error``."""
    result = run([tsc(), "--noEmit", "-p", str(PACKAGE)], PACKAGE)
    assert result.returncode == 0, f"tsc:\n{result.stdout}{result.stderr}"


DRIFTS = {
    "a declared method missing from client.js": (
        "  reconnect() {",
        "  reconnectNow() {",
        "Property 'reconnect' is missing",
    ),
    "a declared return type client.js does not keep": (
        'if (name.startsWith("presence-") || name.startsWith("presence.")) return "presence";',
        'if (name.startsWith("presence-") || name.startsWith("presence.")) return "room";',
        '"room"',
    ),
    "an export client.js has and the declarations do not": (
        "export function channelKind(name) {",
        "export const VERSION = 1;\nexport function channelKind(name) {",
        "conformance.ts",
    ),
}


@pytest.mark.parametrize("drift", DRIFTS, ids=list(DRIFTS))
def test_tsc_fails_when_client_js_drifts_from_its_declarations(drift: str, tmp_path: Path) -> None:
    """The check can fail: the same conformance file against a changed copy of client.js."""
    old, new, said = DRIFTS[drift]
    source = CLIENT_JS.read_text()
    assert source.count(old) == 1, f"client.js no longer has {old!r}: update this test"
    (tmp_path / "client.js").write_text(source.replace(old, new))
    conformance = (PACKAGE / "test" / "conformance.ts").read_text()
    (tmp_path / "conformance.ts").write_text(
        conformance.replace('"../../src/adapters/web/static/client.js"', '"./client.js"')
    )
    config = {
        "extends": str(PACKAGE / "tsconfig.json"),
        "compilerOptions": {"paths": {NAME: [str(PACKAGE / "client.d.ts")]}},
        "files": ["client.js", "conformance.ts"],
        "include": [],
    }
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    result = run([tsc(), "--noEmit", "-p", str(tmp_path)], tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"tsc accepted {drift}:\n{output}"
    assert said in output, output


def test_the_typescript_examples_of_the_docs_compile(tmp_path: Path) -> None:
    files = []
    for page in ("docs/client.md", "js/README.md"):
        blocks = re.findall(r"```ts\n(.*?)```", (ROOT / page).read_text(), re.S)
        assert blocks, f"{page} has no TypeScript example"
        for number, block in enumerate(blocks):
            name = f"{Path(page).stem}-{number}.ts"  # tsc's errors name the page
            (tmp_path / name).write_text("export {};\n" + block)
            files.append(name)
    config = {
        "extends": str(PACKAGE / "tsconfig.json"),
        "compilerOptions": {"paths": {NAME: [str(PACKAGE / "client.d.ts")]}},
        "files": files,
        "include": [],
    }
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    result = run([tsc(), "--noEmit", "-p", str(tmp_path)], tmp_path)
    assert result.returncode == 0, f"tsc:\n{result.stdout}{result.stderr}"


def test_an_app_compiles_against_the_installed_package_with_node_resolution(app: Path) -> None:
    """What a TypeScript app sees: ``exports`` and ``types`` resolve under nodenext, strict."""
    (app / "main.ts").write_text(
        f'import {{ Tidings, CloseCode, type TidingsOptions }} from "{NAME}";\n'
        "const options: TidingsOptions = { autoConnect: false, maxDelay: 5000 };\n"
        'const rt = new Tidings("ws://127.0.0.1:6001/ws", options);\n'
        'rt.subscribe<{ "order.updated": { id: number } }>("user.42")\n'
        '  .on("order.updated", (order) => console.log(order.id + 1, CloseCode.NORMAL));\n'
        'const orders = rt.subscribe<{ "order.updated": { id: number } }>("user.42");\n'
        "// @ts-expect-error: the data is typed\n"
        'orders.on("order.updated", (order) => order.missing);\n'
    )
    config = {
        "compilerOptions": {
            "target": "es2022",
            "lib": ["es2022", "dom"],
            "module": "nodenext",
            "moduleResolution": "nodenext",
            "strict": True,
            "noEmit": True,
            "types": [],
        },
        "files": ["main.ts"],
    }
    (app / "tsconfig.json").write_text(json.dumps(config))
    result = run([tsc(), "--noEmit", "-p", str(app)], app)
    assert result.returncode == 0, f"tsc:\n{result.stdout}{result.stderr}"


# -- The package ----------------------------------------------------------------------------------


def test_the_package_version_is_the_python_package_version() -> None:
    manifest = json.loads((PACKAGE / "package.json").read_text())
    lock = json.loads((PACKAGE / "package-lock.json").read_text())
    assert manifest["version"] == tidings.__version__, (
        f"js/package.json says {manifest['version']}, tidings is {tidings.__version__}: "
        "set the same version in both (and run npm install in js/ for the lock)"
    )
    assert lock["version"] == lock["packages"][""]["version"] == tidings.__version__
    assert lock["name"] == manifest["name"] == NAME
    # js/.npmrc keeps registry addresses out of the lock: npm ci uses the configured registry.
    resolved = [path for path, entry in lock["packages"].items() if "resolved" in entry]
    assert resolved == [], f"package-lock.json records where {resolved} came from"


def test_the_manifest_declares_an_esm_module_with_its_types() -> None:
    manifest = json.loads((PACKAGE / "package.json").read_text())
    assert manifest["type"] == "module"
    assert manifest["exports"]["."] == {"types": "./client.d.ts", "default": "./client.js"}
    assert manifest["sideEffects"] is False
    assert manifest["license"] == "MIT"
    assert manifest["repository"]["directory"] == "js"
    assert "node" in manifest["engines"]
    assert not manifest.get("dependencies"), "the client has no dependencies"
    assert list(manifest["devDependencies"]) == ["typescript"]
    (version,) = manifest["devDependencies"].values()
    assert version[0].isdigit(), f"typescript {version!r}: an exact version, not a range"


def test_npm_pack_lists_exactly_the_intended_files(tarball: Path) -> None:
    entry = json.loads(tarball.with_name(tarball.name + ".json").read_text())
    assert entry["name"] == NAME
    assert entry["version"] == tidings.__version__
    assert {file["path"] for file in entry["files"]} == PACKED
    # postpack removed the copies prepack made: the package directory holds no second client.js.
    assert not (PACKAGE / "client.js").exists()
    assert not (PACKAGE / "LICENSE").exists()


def test_the_tarball_holds_the_gateways_client_js_byte_for_byte(tarball: Path) -> None:
    files = packed_files(tarball)
    assert set(files) == PACKED
    assert files["client.js"] == CLIENT_JS.read_bytes()
    assert files["LICENSE"] == (ROOT / "LICENSE").read_bytes()
    assert files["client.d.ts"] == (PACKAGE / "client.d.ts").read_bytes()
    assert json.loads(files["package.json"])["version"] == tidings.__version__


NODE_SCRIPT = """
import { Tidings, Subscription, CloseCode, ErrorCode, Disconnects, TidingsError, channelKind }
  from "%(name)s";

// Node 20 has no global WebSocket: a fake one, driven by hand, stands for the gateway.
const sockets = [];
class FakeSocket {
  constructor(url) { this.url = url; this.readyState = 1; this.sent = []; sockets.push(this); }
  send(text) { this.sent.push(JSON.parse(text)); }
  close() { this.readyState = 3; }
}
const frame = (socket, value) => socket.onmessage({ data: JSON.stringify(value) });

const rt = new Tidings("http://127.0.0.1:6001/ws", { WebSocket: FakeSocket, token: "t0ken" });
const states = [];
rt.on("state", (state) => states.push(state));
const room = rt.subscribe("presence-chat.lobby");
const received = [];
room.on("client-message", (data, event) => received.push([data, event.user_id]));

for (let turn = 0; sockets.length === 0; turn++) {
  if (turn > 1000) throw new Error("the client opened no socket");
  await new Promise((resolve) => setImmediate(resolve));
}
const socket = sockets[0];
frame(socket, { type: "connected", data: { connection_id: "c1", user_id: "ann", node: "n1" } });
frame(socket, { type: "subscribed", channel: "presence-chat.lobby",
  data: { position: "p-1", members: [{ user_id: "ann", user_info: { name: "Ann" } }] } });
frame(socket, { type: "event", id: "m1", channel: "presence-chat.lobby", event: "client-message",
  data: { text: "hi" }, timestamp: 1, position: "p-2", user_id: "bob" });
const result = {
  url: socket.url, sent: socket.sent, states, received,
  connection: [rt.state, rt.connectionId, rt.userId, rt.node],
  room: [room instanceof Subscription, room.state, room.kind, room.position, [...room.members]],
  constants: [CloseCode.TOKEN_EXPIRED, ErrorCode.GONE, Disconnects[4029], channelKind("user.1")],
  error: new TidingsError(403, "no", "user.2") instanceof Error,
};
rt.close();
result.closed = [rt.state, room.state];
console.log(JSON.stringify(result));
"""


def test_the_tarball_installs_offline_and_runs_in_node(app: Path) -> None:
    installed = app / "node_modules" / NAME
    assert (installed / "client.js").read_bytes() == CLIENT_JS.read_bytes()
    result = checked([tool("node"), "--input-type=module", "-e", NODE_SCRIPT % {"name": NAME}], app)
    seen = json.loads(result.stdout)
    assert seen["url"] == "ws://127.0.0.1:6001/ws?token=t0ken"
    assert seen["sent"] == [{"type": "subscribe", "channel": "presence-chat.lobby"}]
    assert seen["states"] == ["connecting", "connected", "disconnected", "closed"]
    assert seen["received"] == [[{"text": "hi"}, "bob"]]
    assert seen["connection"] == ["connected", "c1", "ann", "n1"]
    assert seen["room"] == [True, "subscribed", "presence", "p-2", [["ann", {"name": "Ann"}]]]
    assert seen["constants"] == [4001, 410, "back-off", "private"]
    assert seen["error"] is True
    assert seen["closed"] == ["closed", "unsubscribed"]


def test_the_package_directory_ignores_its_pack_time_copies() -> None:
    """js/client.js and js/LICENSE exist only while packing; git must never take them."""
    ignored = set((ROOT / ".gitignore").read_text().splitlines())
    assert {"js/client.js", "js/LICENSE", "node_modules/"} <= ignored
