// Validate AsyncAPI documents with the official parser.
//
// Usage: node validate.js [FILE]   (reads stdin when FILE is absent or "-")
//
// The input is one document, or a JSON array of documents (one parser, one
// process: much faster than a run per document). Prints a report as JSON,
// {"valid": bool, "diagnostics": [{severity, code, message, path}]}, or an
// array of reports for an array. Exits 1 when any diagnostic has error
// severity, 2 when the input cannot be read.
"use strict";

const fs = require("fs");
const { Parser, DiagnosticSeverity } = require("@asyncapi/parser");

const SEVERITY_NAMES = { 0: "error", 1: "warning", 2: "information", 3: "hint" };

function fail(message) {
  process.stdout.write(JSON.stringify({ valid: false, error: message }) + "\n");
  process.exit(2);
}

async function check(parser, document) {
  const { diagnostics } = await parser.parse(JSON.stringify(document));
  return {
    valid: !diagnostics.some((d) => d.severity === DiagnosticSeverity.Error),
    diagnostics: diagnostics.map((d) => ({
      severity: SEVERITY_NAMES[d.severity] || String(d.severity),
      code: d.code,
      message: d.message,
      path: d.path,
    })),
  };
}

async function main() {
  const source = process.argv[2];
  let input;
  try {
    input = JSON.parse(fs.readFileSync(source && source !== "-" ? source : 0, "utf8"));
  } catch (err) {
    fail(String(err));
  }
  const parser = new Parser();
  const many = Array.isArray(input);
  const reports = [];
  for (const document of many ? input : [input]) {
    reports.push(await check(parser, document));
  }
  process.stdout.write(JSON.stringify(many ? reports : reports[0], null, 2) + "\n");
  process.exit(reports.every((r) => r.valid) ? 0 : 1);
}

main().catch((err) => fail(String((err && err.stack) || err)));
