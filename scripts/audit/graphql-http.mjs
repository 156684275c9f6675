// Runs graphql-http's GraphQL-over-HTTP server audit against a running Taxbridge and fails on
// any warning or error (a MUST or SHOULD the server does not meet). Notices (MAYs) are printed.
//   node scripts/audit/graphql-http.mjs http://127.0.0.1:8080/graphql
import { createRequire } from 'node:module';

const require = createRequire(new URL('../seeds/package.json', import.meta.url));
const { auditServer } = require('graphql-http');

const url = process.argv[2];
if (!url) {
  console.error('usage: node scripts/audit/graphql-http.mjs <graphql endpoint>');
  process.exit(2);
}
const results = await auditServer({ url });
const counts = { ok: 0, notice: 0, warn: 0, error: 0 };
for (const result of results) {
  counts[result.status] = (counts[result.status] ?? 0) + 1;
  if (result.status !== 'ok') {
    console.log(`${result.status.toUpperCase().padEnd(6)} ${result.id} ${result.name}: ${result.reason}`);
  }
}
console.log(
  `graphql-http audit of ${url}: ${counts.ok} ok, ${counts.notice} notices, ${counts.warn} warnings, ${counts.error} errors`,
);
process.exit(counts.warn + counts.error === 0 ? 0 : 1);
