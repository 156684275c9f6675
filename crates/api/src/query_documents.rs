//! Parsed query documents, kept by query text.
//!
//! Clients send the same few query texts over and over with different variables, and
//! async-graphql's parser (pest) is the most expensive single step of a small request: about a
//! tenth of the CPU time of `me { workspaces(limit: 50) { id slug } }`. A parsed document
//! depends only on its text, so it is kept in a bounded cache and cloned for each request
//! (validated again only when its variables need it: see [`crate::variables`]).
//!
//! Only documents that passed validation are kept, and of those only queries and documents
//! that hold no string and no comment. A mutation may carry a secret inline (an API key in
//! `loginViaPersonalApiToken(token: "…")`), which must not outlive its request in memory; one
//! whose values all arrive as variables (as the docs' examples send `startProviderConnection`)
//! holds nothing but names and punctuation, and is kept like a query. A document that failed
//! validation is no client's real query, and keeping it would let anyone fill the cache.
//!
//! A parsed tree is many times its text (`{a a a …}` is two bytes a field and a few hundred
//! bytes of tree), so entries are weighed by their tokens, not their text, and the cache holds
//! a bounded number of bytes of trees. [`count_tokens`] runs before parsing too, so a document
//! too large to parse cheaply is refused before any tree is built.

use async_graphql::parser::types::{ExecutableDocument, OperationType};
use quick_cache::{sync::Cache, Weighter};
use std::sync::Arc;

/// Documents longer than this are parsed every time (and count against nothing).
const MAX_CACHED_QUERY_BYTES: usize = 8 * 1024;

/// About what one token of a document costs once parsed, tree and positions included.
const TREE_BYTES_PER_TOKEN: u64 = 256;

/// What the cache may hold in all, as weighed by [`Weight`].
const CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// A kept document: the tree, its estimated size, and whether it takes variables only whole
/// ([`crate::variables::takes_variables_whole`]).
struct Kept {
    document: ExecutableDocument,
    bytes: u64,
    variables_whole: bool,
}

/// A document found kept.
pub(crate) struct Found {
    pub(crate) document: ExecutableDocument,
    /// It has validated, and its arguments take variables only whole.
    pub(crate) variables_whole: bool,
}

#[derive(Clone)]
struct Weight;

impl Weighter<Arc<str>, Arc<Kept>> for Weight {
    fn weight(&self, key: &Arc<str>, kept: &Arc<Kept>) -> u64 {
        key.len() as u64 + kept.bytes
    }
}

pub(crate) struct ParsedQueries(Cache<Arc<str>, Arc<Kept>, Weight>);

impl Default for ParsedQueries {
    fn default() -> Self {
        Self(Cache::with_weighter(4_096, CACHE_BYTES, Weight))
    }
}

/// The number of GraphQL tokens in `text`, or `None` as soon as there are more than `max`.
/// A lexer's count, not a parse: names, numbers, strings and punctuators; whitespace, commas
/// and comments are not tokens. Cheap enough to run on every document before parsing it.
pub(crate) fn count_tokens(text: &str, max: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let (mut at, mut count) = (0, 0);
    while at < bytes.len() {
        let b = bytes[at];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                at += 1;
                continue;
            }
            b'#' => {
                while at < bytes.len() && bytes[at] != b'\n' && bytes[at] != b'\r' {
                    at += 1;
                }
                continue;
            }
            b'"' if bytes[at..].starts_with(b"\"\"\"") => {
                at += 3;
                while at < bytes.len() && !bytes[at..].starts_with(b"\"\"\"") {
                    at += if bytes[at..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                at += 3;
            }
            b'"' => {
                at += 1;
                while at < bytes.len() && bytes[at] != b'"' && bytes[at] != b'\n' {
                    at += if bytes[at] == b'\\' { 2 } else { 1 };
                }
                at += 1;
            }
            b'.' if bytes[at..].starts_with(b"...") => at += 3,
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' => {
                while at < bytes.len()
                    && (bytes[at].is_ascii_alphanumeric()
                        || matches!(bytes[at], b'_' | b'.' | b'-' | b'+'))
                {
                    at += 1;
                }
            }
            _ => at += 1,
        }
        count += 1;
        if count > max {
            return None;
        }
    }
    Some(count)
}

impl ParsedQueries {
    /// The parsed document for `query`, if an earlier request parsed the same text.
    pub(crate) fn get(&self, query: &str) -> Option<Found> {
        self.0.get(query).map(|kept| Found {
            document: kept.document.clone(),
            variables_whole: kept.variables_whole,
        })
    }

    /// Whether `document` may be kept once it has validated: short texts only, and only
    /// queries or documents with no string or comment (where an inline secret could be).
    pub(crate) fn worth_keeping(query: &str, document: &ExecutableDocument) -> bool {
        let holds_no_text = !query.contains(['"', '#']);
        query.len() <= MAX_CACHED_QUERY_BYTES
            && (holds_no_text
                || document
                    .operations
                    .iter()
                    .all(|(_, operation)| operation.node.ty == OperationType::Query))
    }

    /// Keeps a document that [was worth keeping](Self::worth_keeping) and has validated, for
    /// later requests with the same text; `tokens` is its [`count_tokens`].
    pub(crate) fn keep(&self, query: &str, document: ExecutableDocument, tokens: usize) {
        let bytes = (tokens as u64).saturating_mul(TREE_BYTES_PER_TOKEN);
        let variables_whole = crate::variables::takes_variables_whole(&document);
        self.0.insert(
            Arc::from(query),
            Arc::new(Kept {
                document,
                bytes,
                variables_whole,
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(query).expect("a valid document")
    }

    #[test]
    fn queries_and_mutations_without_inline_text_are_worth_keeping() {
        let query = "query Me { me { id name } }";
        assert!(ParsedQueries::worth_keeping(query, &parse(query)));
        let login = r#"mutation { loginViaPersonalApiToken(token: "tb_secret") { accessToken } }"#;
        assert!(!ParsedQueries::worth_keeping(login, &parse(login)));
        let commented = "mutation L($k: String!) { loginViaPersonalApiToken(token: $k) { accessToken } } # tb_secret";
        assert!(!ParsedQueries::worth_keeping(commented, &parse(commented)));
        let by_variables = "mutation S($w: ID!, $p: String!, $i: JSON) { startProviderConnection(workspaceId: $w, providerKey: $p, inputs: $i) { id } }";
        assert!(ParsedQueries::worth_keeping(
            by_variables,
            &parse(by_variables)
        ));
        let mixed = "query A { me { id } } mutation B { createWorkspace(input: {displayName: \"x\"}) { id } }";
        assert!(!ParsedQueries::worth_keeping(mixed, &parse(mixed)));
        let long = format!(
            "query {{ me {{ {} }} }}",
            "id ".repeat(MAX_CACHED_QUERY_BYTES / 3)
        );
        assert!(!ParsedQueries::worth_keeping(&long, &parse(&long)));
    }

    #[test]
    fn a_kept_document_comes_back_as_parsed() {
        let cache = ParsedQueries::default();
        let query = "query Me { me { id name } }";
        assert!(cache.get(query).is_none());
        cache.keep(query, parse(query), 9);
        let kept = cache.get(query).expect("kept");
        assert_eq!(
            format!("{:?}", kept.document),
            format!("{:?}", parse(query))
        );
        assert!(kept.variables_whole);
    }

    #[test]
    fn the_cache_holds_a_bounded_weight_of_trees() {
        let cache = ParsedQueries::default();
        // Each entry weighs 8 KiB of text plus 4,000 tokens of tree: about 1 MiB.
        for i in 0..300 {
            let query = format!("query Q{i} {{ me {{ {} }} }}", "id ".repeat(2_700));
            cache.keep(&query, parse("{ me { id } }"), 4_000);
        }
        assert!(cache.0.weight() <= CACHE_BYTES, "{}", cache.0.weight());
        assert!(cache.0.len() < 20, "{} entries", cache.0.len());
    }

    #[test]
    fn tokens_are_counted_as_a_lexer_would() {
        assert_eq!(count_tokens("query Me { me { id name } }", 100), Some(9));
        assert_eq!(count_tokens("{ a(x: \"b, c { d }\") }", 100), Some(8));
        assert_eq!(count_tokens("# only a comment\n{ a }", 100), Some(3));
        assert_eq!(
            count_tokens("{ ...F } fragment F on Q { a }", 100),
            Some(11)
        );
        assert_eq!(
            count_tokens("{ a(x: \"\"\"block \\\"\"\" text\"\"\") }", 100),
            Some(8)
        );
        assert_eq!(count_tokens(&"a ".repeat(1_000), 999), None);
    }
}
