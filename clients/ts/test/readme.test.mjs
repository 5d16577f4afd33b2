// The README's example, run as written (only the port is the test server's).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, test } from "node:test";

import { Ferry, eventually } from "./support.mjs";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
// Inside the package, so that `import "@ferry/client"` resolves to this package.
const script = join(pkg, `.readme-example-${process.pid}.mjs`);
let ferry;
let child;

after(async () => {
  child?.kill();
  rmSync(script, { force: true });
  await ferry?.dispose();
});

test("the README example works as written", async () => {
  const readme = readFileSync(join(pkg, "README.md"), "utf8");
  const example = /```js\n([\s\S]*?)```/.exec(readme)[1];
  assert.ok(example.split("\n").filter((l) => l.trim()).length <= 10, "ten lines at most");
  ferry = await new Ferry().start();
  writeFileSync(script, example.replaceAll("127.0.0.1:8080", `127.0.0.1:${ferry.port}`));
  // Node 20 has the built-in WebSocket only behind a flag.
  const flags = Number(process.versions.node.split(".")[0]) < 22 ? ["--experimental-websocket"] : [];
  child = spawn(process.execPath, [...flags, script], { cwd: pkg });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  await eventually("the example's output", () => out.includes("#1 alice: hi bob")).catch((e) => {
    throw new Error(`${e.message}\n${out}`);
  });
  assert.doesNotMatch(out, /Error/);
});
