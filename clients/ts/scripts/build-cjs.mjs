// The CommonJS build: tsc emits the ES modules (dist/), and this turns each of them
// into a CommonJS module under dist/cjs/, with the same declarations beside them, so
// `require("@ferry/client")` gets the same library and the same types as `import`.
// Run by `npm run build`.

import { transform } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const esm = join(root, "dist");
const cjs = join(esm, "cjs");

function* files(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (path === cjs) continue;
    if (statSync(path).isDirectory()) yield* files(path);
    else yield path;
  }
}

rmSync(cjs, { recursive: true, force: true });
for (const path of files(esm)) {
  const out = join(cjs, relative(esm, path));
  mkdirSync(dirname(out), { recursive: true });
  if (path.endsWith(".d.ts")) {
    copyFileSync(path, out);
  } else if (path.endsWith(".js")) {
    const { code } = await transform(readFileSync(path, "utf8"), { format: "cjs", target: "es2022", loader: "js" });
    writeFileSync(out, code);
  }
}
// The nearest package.json decides how Node (and TypeScript) read a .js / .d.ts file.
writeFileSync(join(cjs, "package.json"), `${JSON.stringify({ type: "commonjs" })}\n`);
