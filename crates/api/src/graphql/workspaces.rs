//! Workspaces and members: the partner guide's steps 3 and 4, `me.workspaces`, deep links.
//! Every resolver that takes a workspace id goes through `Workspaces::reach` first.

use super::{
    caller,
    plain_list::{resolve_items, resolve_plain, selects_only_plain, PlainFields},
    services, Date,
};
use crate::error::ApiError;
use async_graphql::{
    parser::types::Field, registry::Registry, ComplexObject, Context, ContextSelectionSet, Enum,
    InputObject, InputType, Json, Object, OutputType, Positioned, ServerError, ServerResult,
    SimpleObject, Value, ID,
};
use std::borrow::Cow;
use taxbridge_domain::{
    lists::{InvalidPage, Page},
    workspaces::{self as domain, NewWorkspace, WorkspaceError, WorkspaceFilters as DomainFilters},
};

impl From<WorkspaceError> for ApiError {
    fn from(err: WorkspaceError) -> Self {
        match err {
            WorkspaceError::Invalid { field, message } => ApiError::bad_input(field, message),
            WorkspaceError::Forbidden(message) => ApiError::Forbidden(message),
            WorkspaceError::NotFound => ApiError::NotFound(WorkspaceError::NotFound.to_string()),
            WorkspaceError::Store(store) => store.into(),
        }
    }
}

impl From<InvalidPage> for ApiError {
    fn from(err: InvalidPage) -> Self {
        ApiError::bad_input(err.field, err.message)
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(rename_items = "lowercase")]
pub enum WorkspaceType {
    /// created by a partner account (doc)
    Partner,
    /// created by an operator for a firm that signs up directly (ours)
    Customer,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(rename_items = "lowercase")]
pub enum Role {
    Admin,
    User,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum SortByOrder {
    #[graphql(name = "ASC")]
    Asc,
    #[graphql(name = "DESC")]
    Desc,
}

/// Sorting for any list; each list documents the fields it accepts, and rejects others.
#[derive(InputObject)]
pub struct SortBy {
    pub field: String,
    pub order: SortByOrder,
}

pub fn page(
    limit: Option<i32>,
    offset: Option<i32>,
    sort: Option<&SortBy>,
    name_field: &str,
) -> Result<Page, ApiError> {
    let sort = sort.map(|s| (s.field.as_str(), s.order == SortByOrder::Desc));
    Ok(Page::parse(limit, offset, sort, name_field)?)
}

#[derive(InputObject, Default)]
pub struct WorkspaceFilters {
    pub ids: Option<Vec<ID>>,
    pub slugs: Option<Vec<String>>,
}

#[derive(InputObject)]
pub struct CreateWorkspaceInput {
    /// non-blank, at most 200 characters (doc)
    pub display_name: String,
    /// a JSON object, at most 16 KiB (doc)
    pub metadata: Option<Json<serde_json::Value>>,
    /// `xs` | `sm` | `md` | `lg` | `xl` (doc)
    pub firm_size: Option<String>,
}

#[derive(SimpleObject)]
pub struct WorkspaceMember {
    /// the user's id (doc)
    id: ID,
    email: String,
    name: Option<String>,
    role: Role,
}

impl From<domain::Member> for WorkspaceMember {
    fn from(m: domain::Member) -> Self {
        Self {
            id: ID(m.account.id.to_string()),
            email: m.account.email.to_string(),
            name: m.account.name,
            role: match m.role {
                domain::Role::Admin => Role::Admin,
                domain::Role::User => Role::User,
            },
        }
    }
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Workspace {
    id: ID,
    /// URL-friendly, unique, stable; used in deep links. (doc)
    slug: String,
    display_name: String,
    /// `active` | `suspended` (doc: `active`)
    status: String,
    workspace_type: WorkspaceType,
    firm_size: Option<String>,
    metadata: Option<Json<serde_json::Value>>,
    created_at: Date,
    updated_at: Date,
}

impl From<domain::Workspace> for Workspace {
    fn from(w: domain::Workspace) -> Self {
        Self {
            id: ID(w.id.to_string()),
            slug: w.slug,
            display_name: w.display_name,
            status: w.status,
            workspace_type: match w.workspace_type {
                domain::WorkspaceType::Partner => WorkspaceType::Partner,
                domain::WorkspaceType::Customer => WorkspaceType::Customer,
            },
            firm_size: w.firm_size,
            metadata: w.metadata.map(Json),
            created_at: w.created_at.into(),
            updated_at: w.updated_at.into(),
        }
    }
}

impl PlainFields for Workspace {
    const TYPE_NAME: &'static str = "Workspace";
    const PLAIN_FIELDS: &'static [&'static str] = &[
        "id",
        "slug",
        "displayName",
        "status",
        "workspaceType",
        "firmSize",
        "metadata",
        "createdAt",
        "updatedAt",
    ];

    fn plain_field(&self, name: &str) -> Option<Value> {
        Some(match name {
            "id" => Value::String(self.id.0.clone()),
            "slug" => Value::String(self.slug.clone()),
            "displayName" => Value::String(self.display_name.clone()),
            "status" => Value::String(self.status.clone()),
            "workspaceType" => self.workspace_type.to_value(),
            "firmSize" => self.firm_size.to_value(),
            // As `Json`'s resolver does it (its `InputType::to_value` would give a string).
            "metadata" => self
                .metadata
                .as_ref()
                .and_then(|json| async_graphql::to_value(&json.0).ok())
                .unwrap_or_default(),
            "createdAt" => self.created_at.to_value(),
            "updatedAt" => self.updated_at.to_value(),
            _ => return None,
        })
    }
}

/// A workspace read as its id and slug only, for selections that ask for nothing else.
impl PlainFields for domain::WorkspaceKey {
    const TYPE_NAME: &'static str = Workspace::TYPE_NAME;
    const PLAIN_FIELDS: &'static [&'static str] = &["id", "slug"];

    fn plain_field(&self, name: &str) -> Option<Value> {
        match name {
            "id" => Some(Value::String(self.id.as_str().to_owned())),
            "slug" => Some(Value::String(self.slug.clone())),
            _ => None,
        }
    }
}

/// `me.workspaces`, served as `[Workspace!]!`: whole workspaces, or only their keys when the
/// query selects nothing but `id`, `slug` and `__typename` on them.
pub enum WorkspacePage {
    Whole(Vec<Workspace>),
    Keys(Vec<domain::WorkspaceKey>),
}

impl OutputType for WorkspacePage {
    fn type_name() -> Cow<'static, str> {
        <Vec<Workspace> as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <Vec<Workspace> as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Vec<Workspace> as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        match self {
            Self::Whole(workspaces) => resolve_items(ctx, field, workspaces).await,
            // Keys are only read for a selection `resolve_plain` takes; refusing anything else
            // keeps a mismatch from ever answering with missing fields.
            Self::Keys(keys) => resolve_plain(ctx, keys).ok_or_else(|| {
                ServerError::new("the workspace list was read for another selection", None)
            }),
        }
    }
}

#[ComplexObject]
impl Workspace {
    async fn members(
        &self,
        ctx: &Context<'_>,
        limit: Option<i32>,
        offset: Option<i32>,
    ) -> async_graphql::Result<Vec<WorkspaceMember>> {
        let access = services(ctx)
            .workspaces
            .reach(caller(ctx).await?, &self.id)
            .await
            .map_err(ApiError::from)?;
        let page = page(limit, offset, None, "name")?;
        let members = services(ctx)
            .workspaces
            .members(&access, page)
            .await
            .map_err(ApiError::from)?;
        Ok(members.into_iter().map(Into::into).collect())
    }

    /// A sign-in URL that lands on `path` inside this workspace, e.g. `/connect/tax-software`. (ours)
    async fn deep_link(
        &self,
        ctx: &Context<'_>,
        path: Option<String>,
    ) -> async_graphql::Result<String> {
        let base = &services(ctx).public_base_url;
        Ok(domain::deep_link(base, &self.slug, path.as_deref()).map_err(ApiError::from)?)
    }
}

/// `me.workspaces`, resolved for whoever `me` is.
pub async fn my_workspaces(
    ctx: &Context<'_>,
    filters: Option<WorkspaceFilters>,
    limit: Option<i32>,
    offset: Option<i32>,
    sort_by: Option<SortBy>,
) -> async_graphql::Result<WorkspacePage> {
    let caller = caller(ctx).await?;
    let page = page(limit, offset, sort_by.as_ref(), "displayName")?;
    let filters = filters.unwrap_or_default();
    let filters = DomainFilters {
        ids: filters.ids.map(|ids| {
            ids.into_iter()
                .map(|id| taxbridge_domain::ids::WorkspaceId::from_string(id.0))
                .collect()
        }),
        slugs: filters.slugs,
    };
    let workspaces = &services(ctx).workspaces;
    Ok(if selects_only_plain::<domain::WorkspaceKey>(ctx) {
        let keys = workspaces.list_keys(caller, &filters, page).await;
        WorkspacePage::Keys(keys.map_err(ApiError::from)?)
    } else {
        let list = workspaces.list(caller, &filters, page).await;
        let list = list.map_err(ApiError::from)?;
        WorkspacePage::Whole(list.into_iter().map(Into::into).collect())
    })
}

#[derive(Default)]
pub struct WorkspaceMutation;

#[Object]
impl WorkspaceMutation {
    /// Create a workspace (one tax firm). Partner accounts only. (doc)
    async fn create_workspace(
        &self,
        ctx: &Context<'_>,
        input: CreateWorkspaceInput,
    ) -> async_graphql::Result<Workspace> {
        let caller = caller(ctx).await?;
        let input = NewWorkspace {
            display_name: input.display_name,
            metadata: input.metadata.map(|j| j.0),
            firm_size: input.firm_size,
        };
        let workspace = services(ctx)
            .workspaces
            .create(caller, input)
            .await
            .map_err(ApiError::from)?;
        Ok(workspace.into())
    }

    /// Add users by email, creating accounts that do not exist yet; no invitation email is sent. Idempotent. (doc)
    async fn add_users_to_the_workspace(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        user_emails: Vec<String>,
    ) -> async_graphql::Result<Vec<WorkspaceMember>> {
        let access = services(ctx)
            .workspaces
            .reach(caller(ctx).await?, &workspace_id)
            .await
            .map_err(ApiError::from)?;
        let members = services(ctx)
            .workspaces
            .add_users(&access, &user_emails)
            .await
            .map_err(ApiError::from)?;
        Ok(members.into_iter().map(Into::into).collect())
    }

    /// Remove one member from a workspace; their sessions and tokens lose access to it at once. (ours)
    async fn remove_user_from_the_workspace(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        user_id: ID,
    ) -> async_graphql::Result<bool> {
        let access = services(ctx)
            .workspaces
            .reach(caller(ctx).await?, &workspace_id)
            .await
            .map_err(ApiError::from)?;
        Ok(services(ctx)
            .workspaces
            .remove_user(&access, &user_id)
            .await
            .map_err(ApiError::from)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taxbridge_domain::{ids::WorkspaceId, time::Timestamp};

    #[test]
    fn plain_fields_name_the_served_type_and_each_answers() {
        assert_eq!(<Workspace as OutputType>::type_name(), Workspace::TYPE_NAME);
        let workspace = Workspace::from(domain::Workspace {
            id: WorkspaceId::generate(),
            slug: "smith-cpa".into(),
            display_name: "Smith CPA".into(),
            status: "active".into(),
            workspace_type: domain::WorkspaceType::Partner,
            firm_size: Some("md".into()),
            metadata: Some(serde_json::json!({ "crmId": "A-17" })),
            owner_partner_id: None,
            created_at: Timestamp::from_millis(1_705_314_600_000),
            updated_at: Timestamp::from_millis(1_705_314_600_000),
        });
        for name in Workspace::PLAIN_FIELDS {
            assert!(workspace.plain_field(name).is_some(), "{name}");
        }
        assert!(workspace.plain_field("deepLink").is_none());
        let key = domain::WorkspaceKey {
            id: WorkspaceId::generate(),
            slug: "smith-cpa".into(),
        };
        for name in domain::WorkspaceKey::PLAIN_FIELDS {
            assert!(key.plain_field(name).is_some(), "{name}");
        }
        assert!(key.plain_field("displayName").is_none());
    }
}
