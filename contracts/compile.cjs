// Compile a Solidity standard-JSON input with the pinned npm `solc` and make the input
// self-contained: imports (OpenZeppelin from node_modules) are resolved once through a
// callback, then the compilation is repeated on an input that embeds every source, so the
// recorded input is exactly what produced the output (what Sourcify/Blockscout need).
// stdin: standard-JSON input; stdout: {"version", "input", "output"}.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const loaded = {};
function findImports(unit) {
  const file = path.join(__dirname, "node_modules", unit);
  if (!unit.startsWith("@openzeppelin/") || !fs.existsSync(file)) {
    return { error: `import not found in node_modules: ${unit}` };
  }
  loaded[unit] = fs.readFileSync(file, "utf8");
  return { contents: loaded[unit] };
}

const input = JSON.parse(fs.readFileSync(0, "utf8"));
const first = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const failed = (first.errors || []).filter((e) => e.severity === "error");
if (failed.length > 0) {
  process.stderr.write(failed.map((e) => e.formattedMessage).join("\n"));
  process.exit(1);
}
for (const unit of Object.keys(loaded)) {
  input.sources[unit] = { content: loaded[unit] };
}
const sorted = {};
for (const unit of Object.keys(input.sources).sort()) {
  sorted[unit] = input.sources[unit];
}
input.sources = sorted;
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length > 0) {
  process.stderr.write(errors.map((e) => e.formattedMessage).join("\n"));
  process.exit(1);
}
process.stdout.write(JSON.stringify({ version: solc.version(), input, output }));
