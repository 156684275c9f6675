//! Parsed query documents, kept by query text.
//!
//! Clients send the same few query texts over and over with different variables, and
//! async-graphql's parser (pest) is the most expensive single step of a small request: about a
//! tenth of the CPU time of `me { workspaces(limit: 50) { id slug } }`. A parsed document
//! depends only on its text, so it is kept in a bounded cache and cloned for each request
//! (validation still runs every time: it depends on the variables and the schema's limits).
//!
//! Only documents whose operations are all queries are kept. Mutations are rarer and often
//! carry secrets inline (an API key in `loginViaPersonalApiToken(token: "…")`), which must not
//! outlive their request in memory.

use async_graphql::parser::types::{ExecutableDocument, OperationType};
use quick_cache::{sync::Cache, Weighter};
use std::sync::Arc;

/// Documents longer than this are parsed every time (and count against nothing).
const MAX_CACHED_QUERY_BYTES: usize = 8 * 1024;

/// Query text the cache may hold in all; the parsed trees are a small multiple of it.
const CACHE_TEXT_BYTES: u64 = 2 * 1024 * 1024;

#[derive(Clone)]
struct TextLength;

impl Weighter<Arc<str>, Arc<ExecutableDocument>> for TextLength {
    fn weight(&self, key: &Arc<str>, _: &Arc<ExecutableDocument>) -> u64 {
        key.len() as u64
    }
}

pub(crate) struct ParsedQueries(Cache<Arc<str>, Arc<ExecutableDocument>, TextLength>);

impl Default for ParsedQueries {
    fn default() -> Self {
        Self(Cache::with_weighter(4_096, CACHE_TEXT_BYTES, TextLength))
    }
}

impl ParsedQueries {
    /// The parsed document for `query`, if an earlier request parsed the same text.
    pub(crate) fn get(&self, query: &str) -> Option<ExecutableDocument> {
        self.0.get(query).map(|document| (*document).clone())
    }

    /// Keeps `document` for later requests with the same text, if it is worth keeping.
    pub(crate) fn keep(&self, query: &str, document: &ExecutableDocument) {
        let only_queries = document
            .operations
            .iter()
            .all(|(_, operation)| operation.node.ty == OperationType::Query);
        if only_queries && query.len() <= MAX_CACHED_QUERY_BYTES {
            self.0.insert(Arc::from(query), Arc::new(document.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(query).expect("a valid document")
    }

    #[test]
    fn queries_are_kept_and_mutations_are_not() {
        let cache = ParsedQueries::default();
        let query = "query Me { me { id name } }";
        assert!(cache.get(query).is_none());
        cache.keep(query, &parse(query));
        let kept = cache.get(query).expect("kept");
        assert_eq!(format!("{kept:?}"), format!("{:?}", parse(query)));

        let login = r#"mutation { loginViaPersonalApiToken(token: "tb_secret") { accessToken } }"#;
        cache.keep(login, &parse(login));
        assert!(cache.get(login).is_none(), "a mutation's text is not kept");
        let mixed = "query A { me { id } } mutation B { createWorkspace(input: {displayName: \"x\"}) { id } }";
        cache.keep(mixed, &parse(mixed));
        assert!(cache.get(mixed).is_none());
    }

    #[test]
    fn long_documents_are_not_kept() {
        let cache = ParsedQueries::default();
        let long = format!(
            "query {{ me {{ {} }} }}",
            "id ".repeat(MAX_CACHED_QUERY_BYTES / 3)
        );
        cache.keep(&long, &parse(&long));
        assert!(cache.get(&long).is_none());
    }
}
