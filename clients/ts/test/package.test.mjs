// The package as a user installs it: ES modules and CommonJS from the same name,
// with types for both, an engines range that every build tool accepts, and the
// Apache-2.0 LICENSE (the crate's) shipped in the tarball.

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, test } from "node:test";

import semver from "semver";

import { Ferry, eventually } from "./support.mjs";

const pkgDir = join(dirname(fileURLToPath(import.meta.url)), "..");
const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
const script = join(pkgDir, `.package-test-${process.pid}.cjs`);
let ferry;
let child;

after(async () => {
  child?.kill();
  rmSync(script, { force: true });
  await ferry?.dispose();
});

test("require() and import give the same API, each with its declarations", async () => {
  const require = createRequire(join(pkgDir, "index.cjs"));
  const cjs = require("@ferry/client");
  const esm = await import("@ferry/client");
  const api = (m) => Object.keys(m).filter((k) => k !== "default").sort();
  assert.deepEqual(api(cjs), api(esm));
  for (const name of ["connect", "FerryClient", "FerryError", "StopReconnecting", "Unauthorized", "describeClose"]) {
    assert.equal(typeof cjs[name], "function", name);
  }
  assert.equal(require.resolve("@ferry/client"), join(pkgDir, "dist/cjs/index.js"));
  // Each condition's declarations exist, and the CommonJS ones are read as CommonJS.
  for (const cond of ["import", "require"]) {
    const entry = pkg.exports["."][cond];
    assert.ok(existsSync(join(pkgDir, entry.types)), entry.types);
    assert.ok(existsSync(join(pkgDir, entry.default)), entry.default);
  }
  assert.equal(JSON.parse(readFileSync(join(pkgDir, "dist/cjs/package.json"), "utf8")).type, "commonjs");
  assert.equal(new cjs.Unauthorized("x").stopReconnecting, true);
});

test("a CommonJS program connects and chats", async () => {
  ferry = await new Ferry().start();
  writeFileSync(
    script,
    `const { connect } = require("@ferry/client");
(async () => {
  const { token } = await (await fetch("${ferry.http}/demo/token", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ userId: "cjs1" }) })).json();
  const client = connect({ url: "${ferry.wsUrl}", token, userId: "cjs1" });
  client.on("message", (m) => { console.log("got " + m.seq + " " + m.text); client.close(); });
  await client.opened();
  await client.send({ convId: "single:cjs1-cjs2", content: "from commonjs" });
})();
`,
  );
  const flags = Number(process.versions.node.split(".")[0]) < 22 ? ["--experimental-websocket"] : [];
  child = spawn(process.execPath, [...flags, script], { cwd: pkgDir });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  await eventually("the program's output", () => out.includes("got 1 from commonjs")).catch((e) => {
    throw new Error(`${e.message}\n${out}`);
  });
});

test("engines: every dependency and build tool runs on the lowest Node the package claims", () => {
  const lowest = semver.minVersion(pkg.engines.node);
  assert.ok(semver.satisfies(process.version, pkg.engines.node), `this Node ${process.version}`);
  const lock = JSON.parse(readFileSync(join(pkgDir, "package-lock.json"), "utf8"));
  const refuse = [];
  for (const [path, p] of Object.entries(lock.packages)) {
    // Platform binaries of other systems are never installed here.
    if (!path || p.optional || !p.engines?.node) continue;
    if (!semver.satisfies(lowest, p.engines.node)) refuse.push(`${path} needs node ${p.engines.node}`);
  }
  assert.deepEqual(refuse, [], `package.json says node ${pkg.engines.node}`);
});

test("the tarball has the LICENSE (Apache-2.0, as the crate), both builds and their types", () => {
  assert.equal(pkg.license, "Apache-2.0");
  const cargo = readFileSync(join(pkgDir, "../../Cargo.toml"), "utf8");
  assert.match(cargo, /^license = "Apache-2.0"$/m);
  assert.match(readFileSync(join(pkgDir, "LICENSE"), "utf8"), /Apache License\s+Version 2\.0, January 2004/);
  const [packed] = JSON.parse(execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: pkgDir }));
  const files = packed.files.map((f) => f.path);
  for (const f of ["LICENSE", "dist/index.js", "dist/index.d.ts", "dist/cjs/index.js", "dist/cjs/index.d.ts", "dist/cjs/package.json"]) {
    assert.ok(files.includes(f), `${f} in ${files.join(", ")}`);
  }
});
