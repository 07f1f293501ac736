// The files the npm package takes from the rest of the repository, copied in for `npm pack`
// (prepack) and removed after it (postpack), so that each has one source (ADR 0026):
// client.js is the module the Python gateway serves at /client.js, LICENSE the project's.
//   node scripts/pack-files.mjs copy | remove
import { copyFileSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";

const FILES = {
  "client.js": "../../src/adapters/web/static/client.js",
  LICENSE: "../../LICENSE",
};

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const action = process.argv[2];
if (action !== "copy" && action !== "remove") {
  console.error(`pack-files: say "copy" or "remove", not ${JSON.stringify(action)}`);
  process.exit(2);
}
for (const [name, source] of Object.entries(FILES)) {
  const target = here(`../${name}`);
  if (action === "copy") copyFileSync(here(source), target);
  else rmSync(target, { force: true });
}
