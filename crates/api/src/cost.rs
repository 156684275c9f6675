//! What a query may cost, checked on the parsed document before it runs.
//!
//! A query's cost is about the number of values it can return: each field costs 1, plus its
//! items' cost times its `limit` when it takes one (a list field; `limit` read from the
//! literal or the variable, else the lists' default of 50). So `me { workspaces(limit: 500)
//! { members(limit: 500) { id } } }` costs about 250,000 and is refused, however it is
//! spread over aliases. Depth counts nested fields, fragments inlined.
//!
//! This check, not async-graphql's own complexity and depth limits, is what the gateway runs:
//! async-graphql counts a list as one field and reports its refusals as plain messages, while
//! this one counts multipliers and answers with its own code, `QUERY_TOO_COMPLEX`.
//!
//! The same walk refuses directives the gateway does not know (only `@skip` and `@include`
//! act on queries; async-graphql would ignore any other), as `GRAPHQL_VALIDATION_FAILED`.

use crate::{error::ErrorCode, graphql::QueryLimits};
use async_graphql::{parser::types::Directive, Positioned};
use async_graphql::{
    parser::types::{DocumentOperations, ExecutableDocument, Field, Selection, SelectionSet},
    Name, Value as ConstValue, Variables,
};
use async_graphql_value::Value;
use taxbridge_domain::lists::DEFAULT_LIMIT;

/// Why a query was refused: its code and what to fix.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CostRefusal {
    pub code: ErrorCode,
    pub message: String,
}

fn too_complex(message: String) -> CostRefusal {
    CostRefusal {
        code: ErrorCode::QueryTooComplex,
        message,
    }
}

/// The pull pattern's lists (`options.limit`, default 50): each item may cost a call to a
/// provider's platform, so they count their default page even without options. (Other lists
/// without a `limit` count as one, as the docs' queries are written.) Kept in step with the
/// schema by a test.
const PULLS: [&str; 2] = ["clients", "files"];

/// The directives a query may carry.
const KNOWN_DIRECTIVES: [&str; 2] = ["skip", "include"];

fn directives_known(directives: &[Positioned<Directive>]) -> Result<(), CostRefusal> {
    match directives
        .iter()
        .find(|d| !KNOWN_DIRECTIVES.contains(&d.node.name.node.as_str()))
    {
        None => Ok(()),
        Some(unknown) => Err(CostRefusal {
            code: ErrorCode::GraphqlValidationFailed,
            message: format!(
                "Unknown directive \"@{}\": queries may use only @skip and @include.",
                unknown.node.name.node
            ),
        }),
    }
}

/// Checks the operation that will run against `limits`.
pub(crate) fn check(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
    limits: QueryLimits,
) -> Result<(), CostRefusal> {
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) => ops.values().next(),
    };
    // No such operation: validation names the problem.
    let Some(operation) = operation else {
        return Ok(());
    };
    directives_known(&operation.node.directives)?;
    for fragment in document.fragments.values() {
        directives_known(&fragment.node.directives)?;
    }
    let mut walk = Walk {
        document,
        variables,
        limits,
        expanding: Vec::new(),
    };
    walk.set(&operation.node.selection_set.node, 0).map(drop)
}

struct Walk<'a> {
    document: &'a ExecutableDocument,
    variables: &'a Variables,
    limits: QueryLimits,
    /// Fragments being expanded: a cycle is left for validation to refuse.
    expanding: Vec<&'a Name>,
}

impl<'a> Walk<'a> {
    /// The cost of a selection set whose fields sit at `depth + 1`. Stops as soon as the total
    /// passes the limit, so a document built to explode is refused after bounded work.
    fn set(&mut self, set: &'a SelectionSet, depth: usize) -> Result<u64, CostRefusal> {
        let mut total: u64 = 0;
        for item in &set.items {
            let cost = match &item.node {
                Selection::Field(field) => self.field(&field.node, depth + 1)?,
                Selection::InlineFragment(fragment) => {
                    directives_known(&fragment.node.directives)?;
                    self.set(&fragment.node.selection_set.node, depth)?
                }
                Selection::FragmentSpread(spread) => {
                    directives_known(&spread.node.directives)?;
                    let name = &spread.node.fragment_name.node;
                    match self.document.fragments.get(name) {
                        Some(fragment) if !self.expanding.contains(&name) => {
                            self.expanding.push(name);
                            let cost = self.set(&fragment.node.selection_set.node, depth);
                            self.expanding.pop();
                            cost?
                        }
                        _ => 0,
                    }
                }
            };
            total = total.saturating_add(cost);
            if total > self.limits.max_complexity as u64 {
                return Err(too_complex(format!(
                    "The query costs more than the {} allowed (about one per value it can return; a list field counts its `limit` times the fields selected on its items). Select fewer fields or ask for a smaller `limit` and page with `offset`.",
                    self.limits.max_complexity
                )));
            }
        }
        Ok(total)
    }

    fn field(&mut self, field: &'a Field, depth: usize) -> Result<u64, CostRefusal> {
        directives_known(&field.directives)?;
        if depth > self.limits.max_depth {
            return Err(too_complex(format!(
                "The query nests fields more than {} deep; ask for less nesting in one request.",
                self.limits.max_depth
            )));
        }
        if field.selection_set.node.items.is_empty() {
            return Ok(1);
        }
        let items = self.set(&field.selection_set.node, depth)?;
        Ok(1u64.saturating_add(self.multiplier(field).saturating_mul(items)))
    }

    /// A literal or variable argument, variables inside objects included.
    fn resolve(&self, value: &Value) -> Option<ConstValue> {
        match value {
            Value::Variable(name) => self.variables.get(name).cloned(),
            other => other
                .clone()
                .into_const_with(|name| self.variables.get(&name).cloned().ok_or(()))
                .ok(),
        }
    }

    /// How many items a field can return: its `limit` (or, for the pull pattern's fields,
    /// `options.limit`), else the lists' default, for fields that take one; 1 for the rest.
    fn multiplier(&self, field: &Field) -> u64 {
        let value = if let Some(limit) = field.get_argument("limit") {
            self.resolve(&limit.node)
        } else if let Some(options) = field.get_argument("options") {
            match self.resolve(&options.node) {
                // A limit that is no count is refused by the field itself, naming it.
                Some(ConstValue::Object(options)) => options
                    .get("limit")
                    .filter(|n| !matches!(n, ConstValue::Number(n) if n.as_u64().is_none()))
                    .cloned(),
                _ => None,
            }
        } else if PULLS.contains(&field.name.node.as_str()) {
            None
        } else {
            return 1;
        };
        match value {
            Some(ConstValue::Number(n)) => n.as_u64().unwrap_or(u64::MAX).max(1),
            // A pull's `options.limit` may be spelled as a string.
            Some(ConstValue::String(n)) => n
                .parse::<u64>()
                .map_or(u64::from(DEFAULT_LIMIT), |n| n.max(1)),
            _ => u64::from(DEFAULT_LIMIT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: QueryLimits = QueryLimits {
        max_depth: 12,
        max_complexity: 20_000,
        max_document_bytes: 64 * 1024,
        max_document_tokens: 4_000,
        max_response_bytes: 16 * 1024 * 1024,
    };

    fn check_query(query: &str, variables: serde_json::Value) -> Result<(), CostRefusal> {
        let document = async_graphql::parser::parse_query(query).expect("parses");
        let variables = Variables::from_json(variables);
        check(&document, None, &variables, LIMITS)
    }

    #[test]
    fn the_docs_queries_pass() {
        for query in [
            "query Me { me { id name } }",
            "{ me { workspaces(limit: 500) { id slug displayName createdAt } } }",
            "{ me { workspaces { id members { id email name role } } } }",
        ] {
            assert_eq!(check_query(query, serde_json::json!({})), Ok(()), "{query}");
        }
    }

    #[test]
    fn every_pull_of_the_schema_is_counted() {
        let sdl = crate::sdl();
        let mut paged: Vec<&str> = sdl
            .lines()
            .filter(|line| {
                line.starts_with('\t') && line.contains("options: JSON") && line.contains("): [")
            })
            .filter_map(|line| line.trim().split('(').next())
            .collect();
        paged.sort_unstable();
        paged.dedup();
        let mut known = PULLS.to_vec();
        known.sort_unstable();
        assert_eq!(paged, known);
    }

    #[test]
    fn pulls_without_options_count_the_default_page() {
        let refused = check_query(
            "{ me { workspaces(limit: 1) { connections(limit: 8) { clients { id files { id name: fileName size: fileSize } } } } } }",
            serde_json::json!({}),
        )
        .expect_err("8 x 50 x 50 values");
        assert_eq!(refused.code, ErrorCode::QueryTooComplex);
    }

    #[test]
    fn pulls_count_their_options_limit() {
        let page = "{ me { workspaces(limit: 1) { connections(limit: 1) { clients(options: {limit: 500}) { id name email phone type lastModified } } } } }";
        assert!(check_query(page, serde_json::json!({})).is_ok());
        for query in [
            "{ me { workspaces(limit: 1) { connections(limit: 1) { clients(options: {limit: 500}) { id files { id fileName } } } } } }",
            "query($o: JSON) { me { workspaces(limit: 1) { connections(limit: 1) { clients(options: $o) { id files { id fileName } } } } } }",
            "query($n: Int) { me { workspaces(limit: 1) { connections(limit: 1) { clients(options: {limit: $n}) { id files { id fileName } } } } } }",
        ] {
            let refused = check_query(query, serde_json::json!({"o": {"limit": "500"}, "n": 500}))
                .expect_err(query);
            assert_eq!(refused.code, ErrorCode::QueryTooComplex);
        }
    }

    #[test]
    fn nested_lists_multiply_their_limits_whether_literal_or_variable() {
        let nested = "{ me { workspaces(limit: 500) { members(limit: 500) { id } } } }";
        assert!(check_query(nested, serde_json::json!({})).is_err());
        let by_variable =
            "query($n: Int) { me { workspaces(limit: $n) { members(limit: $n) { id } } } }";
        assert!(check_query(by_variable, serde_json::json!({ "n": 500 })).is_err());
        assert_eq!(
            check_query(by_variable, serde_json::json!({ "n": 10 })),
            Ok(())
        );
    }

    #[test]
    fn aliases_add_up() {
        let one = "me { workspaces(limit: 500) { id slug } }";
        let many: String = (0..25).map(|i| format!("a{i}: {one} ")).collect();
        assert_eq!(
            check_query(&format!("{{ {one} }}"), serde_json::json!({})),
            Ok(())
        );
        assert!(check_query(&format!("{{ {many} }}"), serde_json::json!({})).is_err());
    }

    #[test]
    fn fragments_count_where_they_are_spread_and_cycles_end() {
        let fragments = "fragment W on Workspace { id slug members(limit: 500) { id } } \
                         { me { workspaces(limit: 100) { ...W } } }";
        assert!(check_query(fragments, serde_json::json!({})).is_err());
        let cycle = "fragment A on Query { ...B } fragment B on Query { ...A me { id } } { ...A }";
        assert_eq!(check_query(cycle, serde_json::json!({})), Ok(()));
    }

    #[test]
    fn depth_counts_nested_fields() {
        let mut deep = "name".to_owned();
        for _ in 0..14 {
            deep = format!("ofType {{ {deep} }}");
        }
        let query = format!("{{ __schema {{ types {{ {deep} }} }} }}");
        let err = check_query(&query, serde_json::json!({})).expect_err("too deep");
        assert!(err.message.contains("12 deep"), "{}", err.message);
        assert_eq!(err.code, ErrorCode::QueryTooComplex);
    }

    #[test]
    fn only_skip_and_include_are_known_directives() {
        let ok = "query($s: Boolean!) { me @skip(if: $s) { id @include(if: true) } }";
        assert_eq!(check_query(ok, serde_json::json!({ "s": false })), Ok(()));
        for bad in [
            "{ me { id @foo } }",
            "query Q @foo { me { id } }",
            "{ ... on Query @foo { me { id } } }",
            "fragment F on Query @foo { me { id } } { ...F }",
        ] {
            let err = check_query(bad, serde_json::json!({})).expect_err(bad);
            assert_eq!(err.code, ErrorCode::GraphqlValidationFailed, "{bad}");
            assert!(err.message.contains("@foo"), "{}", err.message);
        }
    }
}
