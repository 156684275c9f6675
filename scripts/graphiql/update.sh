#!/usr/bin/env bash
# Refreshes the GraphiQL page's assets in crates/api/assets/graphiql from the npm packages at
# the pinned versions below: production builds only, with their licenses. The binary embeds
# them, so GET /graphql works offline and runs nothing from outside the operator's control.
#   scripts/graphiql/update.sh   # then review the diff, rebuild, and commit
set -euo pipefail
cd "$(dirname "$0")/../.."
GRAPHIQL=3.9.0
REACT=18.3.1
OUT=crates/api/assets/graphiql
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "graphiql@$GRAPHIQL" "react@$REACT" "react-dom@$REACT" >/dev/null)
for pkg in "graphiql-$GRAPHIQL" "react-$REACT" "react-dom-$REACT"; do
  mkdir -p "$WORK/$pkg" && tar xzf "$WORK/$pkg.tgz" -C "$WORK/$pkg"
done
cp "$WORK/graphiql-$GRAPHIQL/package/graphiql.min.js" "$WORK/graphiql-$GRAPHIQL/package/graphiql.min.css" "$OUT/"
cp "$WORK/graphiql-$GRAPHIQL/package/LICENSE" "$OUT/LICENSE.graphiql"
cp "$WORK/react-$REACT/package/umd/react.production.min.js" "$OUT/"
cp "$WORK/react-dom-$REACT/package/umd/react-dom.production.min.js" "$OUT/"
cp "$WORK/react-$REACT/package/LICENSE" "$OUT/LICENSE.react"
{
  echo "graphiql $GRAPHIQL, react $REACT, react-dom $REACT (npm), fetched by scripts/graphiql/update.sh"
  (cd "$OUT" && sha256sum graphiql.min.js graphiql.min.css react.production.min.js react-dom.production.min.js)
} >"$OUT/VERSIONS"
cat "$OUT/VERSIONS"
