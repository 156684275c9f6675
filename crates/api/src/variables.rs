//! Whether a request's variables conform to the types its operation declares, by the schema's
//! own rules: what lets a document that has already passed validation skip validating again.
//!
//! async-graphql validates a document and its variable values in one pass (its
//! `ArgumentsOfCorrectType` rule reads the variables), so a kept document
//! ([`crate::query_documents`]) used to be validated whole on every request: a third of
//! `startProviderConnection`'s GraphQL time. Every other rule depends on the document alone.
//! So a kept document is run on a second schema in async-graphql's `ValidationMode::Fast` when
//! both of these hold:
//!
//! - its arguments take variables only whole (`arg: $v`, never `arg: {x: $v}`): then an
//!   argument's value is the variable's value, and nothing else in it went unchecked when the
//!   document validated ([`takes_variables_whole`]);
//! - each variable the operation declares is given, not null, and conforms to its declared
//!   type ([`VariableTypes::conform`]). The document's validation already checked that the
//!   declared type fits every place the variable is used, so the value fits them too.
//!
//! Otherwise, or when unsure (a null, an omitted variable, a one-of input object, a type this
//! check does not know), the request runs on the strict schema, which answers with
//! async-graphql's own errors.
//!
//! Written here because async-graphql keeps its input-value check private. This one follows it
//! (`is_valid_input_value` in async-graphql 7.2) and is stricter where it differs, so it never
//! accepts a value async-graphql would refuse; the tests hold the two side by side.

use async_graphql::{
    parser::types::{
        DocumentOperations, ExecutableDocument, OperationDefinition, Selection, SelectionSet,
    },
    registry::{MetaType, MetaTypeName, Registry},
    OutputType, Positioned, Variables,
};
use async_graphql_value::{ConstValue, Value};

/// The schema's input types, for checking variable values.
pub(crate) struct VariableTypes {
    registry: Registry,
}

impl VariableTypes {
    /// The input types that the gateway's query and mutation roots reach.
    pub(crate) fn of_gateway() -> Self {
        let mut registry = Registry::default();
        crate::graphql::Query::create_type_info(&mut registry);
        crate::graphql::Mutation::create_type_info(&mut registry);
        Self { registry }
    }

    /// Whether every variable the chosen operation declares is given, not null, and conforms
    /// to its declared type. `false` also when the operation cannot be told.
    pub(crate) fn conform(
        &self,
        document: &ExecutableDocument,
        operation_name: Option<&str>,
        variables: &Variables,
    ) -> bool {
        let Some(operation) = chosen(document, operation_name) else {
            return false;
        };
        operation
            .node
            .variable_definitions
            .iter()
            .all(|definition| {
                let definition = &definition.node;
                variables
                    .get(&definition.name.node)
                    .is_some_and(|value| self.fits(&definition.var_type.node.to_string(), value))
            })
    }

    /// Whether `value` is an input value of type `ty` (written as in SDL: `[ID!]!`). Nulls are
    /// refused wherever a type is checked; a scalar's own value is the scalar's to judge.
    fn fits(&self, ty: &str, value: &ConstValue) -> bool {
        if matches!(value, ConstValue::Null) {
            return false;
        }
        match MetaTypeName::create(ty) {
            MetaTypeName::NonNull(inner) => self.fits(inner, value),
            MetaTypeName::List(item) => match value {
                ConstValue::List(items) => items.iter().all(|v| self.fits(item, v)),
                single => self.fits(item, single),
            },
            MetaTypeName::Named(name) => match self.registry.types.get(name) {
                Some(MetaType::Scalar { is_valid, .. }) => {
                    is_valid.as_ref().is_none_or(|valid| valid(value))
                }
                Some(MetaType::Enum { enum_values, .. }) => match value {
                    ConstValue::Enum(v) => enum_values.contains_key(v.as_str()),
                    ConstValue::String(v) => enum_values.contains_key(v.as_str()),
                    _ => false,
                },
                Some(MetaType::InputObject {
                    input_fields,
                    oneof: false,
                    ..
                }) => {
                    let ConstValue::Object(given) = value else {
                        return false;
                    };
                    given
                        .keys()
                        .all(|key| input_fields.contains_key(key.as_str()))
                        && input_fields
                            .values()
                            .all(|field| match given.get(field.name.as_str()) {
                                Some(v) => self.fits(&field.ty, v),
                                None => {
                                    field.default_value.is_some()
                                        || !MetaTypeName::create(&field.ty).is_non_null()
                                }
                            })
                }
                _ => false,
            },
        }
    }
}

/// The operation a request runs, as async-graphql picks it.
fn chosen<'d>(
    document: &'d ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'d Positioned<OperationDefinition>> {
    match (&document.operations, operation_name) {
        (DocumentOperations::Single(operation), _) => Some(operation),
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name),
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next()
        }
        _ => None,
    }
}

/// Whether every argument and directive argument in the document is either free of variables
/// or exactly one variable.
pub(crate) fn takes_variables_whole(document: &ExecutableDocument) -> bool {
    document.operations.iter().all(|(_, operation)| {
        whole_in_directives(&operation.node.directives)
            && whole_in(&operation.node.selection_set.node)
    }) && document.fragments.values().all(|fragment| {
        whole_in_directives(&fragment.node.directives)
            && whole_in(&fragment.node.selection_set.node)
    })
}

fn whole_in(selection_set: &SelectionSet) -> bool {
    selection_set.items.iter().all(|item| match &item.node {
        Selection::Field(field) => {
            field.node.arguments.iter().all(|(_, v)| whole(&v.node))
                && whole_in_directives(&field.node.directives)
                && whole_in(&field.node.selection_set.node)
        }
        Selection::FragmentSpread(spread) => whole_in_directives(&spread.node.directives),
        Selection::InlineFragment(inline) => {
            whole_in_directives(&inline.node.directives)
                && whole_in(&inline.node.selection_set.node)
        }
    })
}

fn whole_in_directives(directives: &[Positioned<async_graphql::parser::types::Directive>]) -> bool {
    directives
        .iter()
        .all(|d| d.node.arguments.iter().all(|(_, v)| whole(&v.node)))
}

fn whole(value: &Value) -> bool {
    matches!(value, Value::Variable(_)) || !holds_variable(value)
}

fn holds_variable(value: &Value) -> bool {
    match value {
        Value::Variable(_) => true,
        Value::List(items) => items.iter().any(holds_variable),
        Value::Object(fields) => fields.values().any(holds_variable),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};
    use serde_json::json;
    use std::sync::Arc;

    /// Ends every request after validation: the schema's resolvers need services these
    /// tests do not build, and only validation's verdict is wanted.
    struct ValidateOnly;

    impl ExtensionFactory for ValidateOnly {
        fn create(&self) -> Arc<dyn Extension> {
            Arc::new(ValidateOnly)
        }
    }

    #[async_trait::async_trait]
    impl Extension for ValidateOnly {
        async fn execute(
            &self,
            _ctx: &ExtensionContext<'_>,
            _operation_name: Option<&str>,
            _next: NextExecute<'_>,
        ) -> async_graphql::Response {
            async_graphql::Response::new(async_graphql::Value::Null)
        }
    }

    fn parse(query: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(query).expect("a valid document")
    }

    #[test]
    fn arguments_that_take_variables_whole_are_told_from_mixed_ones() {
        for query in [
            "mutation S($w: ID!, $p: String!, $i: JSON) { startProviderConnection(workspaceId: $w, providerKey: $p, inputs: $i) { id } }",
            "query { me { id name } }",
            "query W($ids: [ID!], $n: Int) { me { workspaces(filters: {ids: [\"a\"]}, limit: $n) { id } } }",
            "query Q($s: Boolean!) { me { id @skip(if: $s) ...F } } fragment F on Account { name }",
        ] {
            assert!(takes_variables_whole(&parse(query)), "{query}");
        }
        for query in [
            "query W($ids: [ID!]) { me { workspaces(filters: {ids: $ids}) { id } } }",
            "query W($id: ID!) { me { workspaces(filters: {ids: [$id]}) { id } } }",
            "query Q($s: Boolean!) { me { ...F } } fragment F on Account { name @include(if: $s) workspaces(filters: {ids: [$s]}) { id } }",
        ] {
            assert!(!takes_variables_whole(&parse(query)), "{query}");
        }
    }

    /// The check against async-graphql's own: whatever `conform` accepts, strict validation
    /// accepts too; and the values strict validation refuses, `conform` refuses.
    #[tokio::test]
    async fn conform_accepts_nothing_that_strict_validation_refuses() {
        let types = VariableTypes::of_gateway();
        let schema = crate::graphql::builder(None, None)
            .extension(ValidateOnly)
            .finish();
        let cases = [
            ("mutation S($w: ID!, $p: String!, $i: JSON) { startProviderConnection(workspaceId: $w, providerKey: $p, inputs: $i) { id } }",
             vec![
                (json!({"w": "wsp_1", "p": "drake", "i": {"apiKey": "k", "n": null}}), true),
                (json!({"w": 12, "p": "drake", "i": [1, 2]}), true),
                (json!({"w": "wsp_1", "p": "drake"}), false),
                (json!({"w": "wsp_1", "p": "drake", "i": null}), false),
                (json!({"w": null, "p": "drake", "i": {}}), false),
                (json!({"w": 1.5, "p": "drake", "i": {}}), false),
                (json!({"w": "wsp_1", "p": 7, "i": {}}), false),
                (json!({"w": ["wsp_1"], "p": "drake", "i": {}}), false),
                (json!({"w": {"id": "x"}, "p": "drake", "i": {}}), false),
             ]),
            ("query W($f: WorkspaceFilters, $n: Int, $o: Int, $s: SortBy) { me { workspaces(filters: $f, limit: $n, offset: $o, sortBy: $s) { id } } }",
             vec![
                (json!({"f": {"ids": ["a", "b"]}, "n": 10, "o": 0, "s": {"field": "createdAt", "order": "DESC"}}), true),
                (json!({"f": {"ids": "a"}, "n": 10, "o": 0, "s": {"field": "createdAt", "order": "ASC"}}), true),
                (json!({"f": {"ids": [null]}, "n": 10, "o": 0, "s": {"field": "createdAt", "order": "DESC"}}), false),
                (json!({"f": {"idz": ["a"]}, "n": 10, "o": 0, "s": {"field": "createdAt", "order": "DESC"}}), false),
                (json!({"f": {}, "n": "ten", "o": 0, "s": {"field": "createdAt", "order": "DESC"}}), false),
                // Out of an Int's range: the scalar's check takes any integer, in both modes, and
                // the resolver refuses it when it reads the argument.
                (json!({"f": {}, "n": 3_000_000_000u64, "o": 0, "s": {"field": "createdAt", "order": "DESC"}}), true),
                (json!({"f": {}, "n": 1, "o": 0, "s": {"field": "createdAt", "order": "SIDEWAYS"}}), false),
                (json!({"f": {}, "n": 1, "o": 0, "s": {"order": "DESC"}}), false),
                (json!({"f": {}, "n": 1, "o": 0, "s": "createdAt"}), false),
             ]),
        ];
        let mut refused_by_strict = 0;
        for (query, variables) in cases {
            let document = parse(query);
            for (given, expected) in variables {
                let variables = Variables::from_json(given.clone());
                let conforms = types.conform(&document, None, &variables);
                assert_eq!(conforms, expected, "{given}");
                let response = schema
                    .execute(async_graphql::Request::new(query).variables(variables))
                    .await;
                if conforms {
                    assert!(
                        response.errors.is_empty(),
                        "conform accepted what validation refused: {given}: {:?}",
                        response.errors
                    );
                }
                if response
                    .errors
                    .iter()
                    .any(|e| e.message.starts_with("Invalid value for argument"))
                {
                    refused_by_strict += 1;
                }
            }
        }
        // The table holds values strict validation refuses, not only ones `conform` doubts.
        assert!(refused_by_strict >= 8, "{refused_by_strict}");
    }

    #[test]
    fn an_operation_that_cannot_be_told_does_not_conform() {
        let types = VariableTypes::of_gateway();
        let document = parse("query A { me { id } } query B { me { name } }");
        let none = Variables::default();
        assert!(!types.conform(&document, None, &none));
        assert!(types.conform(&document, Some("B"), &none));
        assert!(!types.conform(&document, Some("C"), &none));
    }
}
