// Validates an AsyncAPI document with the AsyncAPI project's own parser (@asyncapi/parser, pinned in
// package-lock.json): `node validate.mjs FILE` (or the document on stdin). Prints every diagnostic;
// exits 1 when any is an error (or the document does not parse), 0 otherwise.
import { readFileSync } from "node:fs";

import parserModule from "@asyncapi/parser"; // CommonJS: its names come through the default export

const { Parser, DiagnosticSeverity } = parserModule;
const SEVERITY = Object.fromEntries(Object.entries(DiagnosticSeverity).map(([name, level]) => [level, name]));

const source = process.argv[2];
const text = readFileSync(source ?? 0, "utf8");
const { document, diagnostics } = await new Parser().parse(text, { source });

for (const d of diagnostics) {
  const where = d.path.length ? d.path.join("/") : "(document)";
  console.error(`${SEVERITY[d.severity] ?? d.severity}: ${where}: ${d.message} [${d.code}]`);
}
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
if (document === undefined || errors.length > 0) {
  console.error(`invalid AsyncAPI document: ${errors.length} error(s)`);
  process.exit(1);
}
console.log(`valid AsyncAPI ${document.version()} document: ${diagnostics.length} diagnostic(s), none an error`);
