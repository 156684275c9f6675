//! A schema extension that gives async-graphql's own errors their codes (parse failures,
//! validation failures, complexity and depth limits) and notes which root fields a request
//! ran, for usage counting.

use super::RequestContext;
use crate::error::ErrorCode;
use async_graphql::{
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation},
    parser::types::{DocumentOperations, ExecutableDocument, Selection},
    ServerError, ServerResult, ValidationResult, Variables,
};
use std::sync::Arc;

pub struct GatewayExtension;

impl ExtensionFactory for GatewayExtension {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(GatewayExtension)
    }
}

pub(crate) fn with_code(mut err: ServerError, code: ErrorCode) -> ServerError {
    err.extensions
        .get_or_insert_with(Default::default)
        .set("code", code.as_str());
    err
}

#[async_trait::async_trait]
impl Extension for GatewayExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next
            .run(ctx, query, variables)
            .await
            .map_err(|err| with_code(err, ErrorCode::GraphqlParseFailed))?;
        if let Some(request) = ctx.data_opt::<Arc<RequestContext>>() {
            let _ = request
                .operation
                .set(root_fields(&document, request.operation_name.as_deref()));
        }
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|err| {
                    let code = if err.message.contains("too complex")
                        || err.message.contains("nested too deep")
                    {
                        ErrorCode::QueryTooComplex
                    } else {
                        ErrorCode::GraphqlValidationFailed
                    };
                    with_code(err, code)
                })
                .collect()
        })
    }
}

/// The names of the root fields the request will run, sorted and joined: `me`,
/// `loginViaPersonalApiToken`, or `createWorkspace,me` for a request with two.
fn root_fields(document: &ExecutableDocument, operation_name: Option<&str>) -> String {
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) => ops.values().next(),
    };
    let mut names: Vec<&str> = operation
        .map(|op| {
            op.node
                .selection_set
                .node
                .items
                .iter()
                .filter_map(|item| match &item.node {
                    Selection::Field(field) => Some(field.node.name.node.as_str()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        "(unknown)".to_owned()
    } else {
        names.join(",")
    }
}
