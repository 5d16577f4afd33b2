// Builds the demo's script (demo/app.ts and the library) into demo/dist/demo.js,
// which is committed: ferry embeds it at compile time, so `cargo build` needs no npm.
// Run with `npm run bundle-demo` after changing the library or the demo.

import { build } from "esbuild";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

await build({
  entryPoints: [join(root, "demo/app.ts")],
  outfile: join(root, "demo/dist/demo.js"),
  bundle: true,
  format: "esm",
  target: "es2020",
  minify: true,
  legalComments: "none",
  banner: { js: "// Built by clients/ts/scripts/bundle-demo.mjs from clients/ts/demo/app.ts; do not edit." },
  logLevel: "info",
});
