//! Workspaces and members: the partner guide's steps 3 and 4, `me.workspaces`, deep links.
//! Every resolver that takes a workspace id goes through `Workspaces::reach` first.

use super::{
    caller,
    lists::{page, SortBy},
    plain_list::{resolve_items, selects_only, LeafNames},
    services, Date,
};
use crate::error::ApiError;
use async_graphql::{
    parser::types::Field, registry::Registry, ComplexObject, Context, ContextSelectionSet, Enum,
    InputObject, Json, Object, OutputType, Positioned, ServerResult, SimpleObject, Value, ID,
};
use std::{borrow::Cow, sync::OnceLock};
use taxbridge_domain::{
    audit::Who,
    lists::check_filter,
    workspaces::{self as domain, NewWorkspace, WorkspaceFilters as DomainFilters},
};

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(rename_items = "lowercase")]
pub enum WorkspaceType {
    /// Created by a partner account, which reaches it from then on.
    Partner,
    /// Created by an operator for a firm that signs up directly.
    Customer,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(rename_items = "lowercase")]
pub enum Role {
    Admin,
    User,
}

#[derive(InputObject, Default)]
pub struct WorkspaceFilters {
    pub ids: Option<Vec<ID>>,
    pub slugs: Option<Vec<String>>,
}

#[derive(InputObject)]
pub struct CreateWorkspaceInput {
    /// The firm's name: not blank, at most 200 characters. The slug is derived from it.
    pub display_name: String,
    /// Your own data about the firm: a JSON object of at most 16 KiB, returned as given.
    pub metadata: Option<Json<serde_json::Value>>,
    /// One of `xs`, `sm`, `md`, `lg`, `xl`.
    pub firm_size: Option<String>,
}

#[derive(SimpleObject)]
pub struct WorkspaceMember {
    /// The user's account id.
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
    /// URL-friendly, unique and stable; used in deep links.
    slug: String,
    display_name: String,
    /// `active`, or `suspended` when an operator has paused the workspace.
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

/// A workspace read as its id and slug only, served as `Workspace` when a query selects
/// nothing else on `me.workspaces` (see [`WorkspacePage`]). Its fields are the same fields of
/// `Workspace`, name for name and type for type (a test holds the two side by side); it is
/// never registered in the schema.
#[derive(SimpleObject)]
#[graphql(name = "Workspace")]
pub struct WorkspaceKey {
    id: ID,
    slug: String,
}

impl From<domain::WorkspaceKey> for WorkspaceKey {
    fn from(key: domain::WorkspaceKey) -> Self {
        Self {
            id: ID(key.id.to_string()),
            slug: key.slug,
        }
    }
}

/// The leaves a [`WorkspaceKey`] answers, read once from its derive.
fn key_fields() -> &'static LeafNames {
    static FIELDS: OnceLock<LeafNames> = OnceLock::new();
    FIELDS.get_or_init(LeafNames::of::<WorkspaceKey>)
}

/// `me.workspaces`, served as `[Workspace!]!`: whole workspaces, or only their keys when the
/// query selects nothing but the fields of [`WorkspaceKey`] and `__typename` on them.
pub enum WorkspacePage {
    Whole(Vec<Workspace>),
    Keys(Vec<WorkspaceKey>),
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
            Self::Keys(keys) => resolve_items(ctx, field, keys).await,
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
    ) -> Result<Vec<WorkspaceMember>, ApiError> {
        let access = services(ctx)
            .workspaces
            .reach(caller(ctx).await?, &self.id)
            .await?;
        let page = page(limit, offset, None, "name")?;
        let members = services(ctx).workspaces.members(&access, page).await?;
        Ok(members.into_iter().map(Into::into).collect())
    }

    /// This workspace's provider connections; sort by createdAt, updatedAt or displayName.
    async fn connections(
        &self,
        ctx: &Context<'_>,
        filters: Option<super::connections::ConnectionFilters>,
        limit: Option<i32>,
        offset: Option<i32>,
        sort_by: Option<SortBy>,
    ) -> Result<super::connections::ConnectionPage, ApiError> {
        let access = services(ctx)
            .workspaces
            .reach(caller(ctx).await?, &self.id)
            .await?;
        super::connections::of_workspace(ctx, &access, filters, limit, offset, sort_by).await
    }

    /// This workspace's audit log: every change and every use of stored credentials, with who
    /// acted, with which key and from where. For the workspace's admins and the partner that
    /// created it; other members get FORBIDDEN. Newest first by default; sort by occurredAt.
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        filters: Option<super::audit::AuditEventFilters>,
        limit: Option<i32>,
        offset: Option<i32>,
        sort_by: Option<SortBy>,
    ) -> Result<Vec<super::audit::AuditEvent>, ApiError> {
        let access = services(ctx)
            .workspaces
            .reach(caller(ctx).await?, &self.id)
            .await?;
        let (filters, page) = super::audit::arguments(filters, limit, offset, sort_by)?;
        let events = services(ctx)
            .audit
            .of_workspace(&access, &filters, page)
            .await?;
        Ok(events.into_iter().map(Into::into).collect())
    }

    /// A sign-in URL that lands on `path` inside this workspace, e.g. `/connect/tax-software`.
    async fn deep_link(&self, ctx: &Context<'_>, path: Option<String>) -> Result<String, ApiError> {
        let base = &services(ctx).public_base_url;
        Ok(domain::deep_link(base, &self.slug, path.as_deref())?)
    }
}

/// `me.workspaces`, resolved for whoever `me` is.
pub async fn my_workspaces(
    ctx: &Context<'_>,
    filters: Option<WorkspaceFilters>,
    limit: Option<i32>,
    offset: Option<i32>,
    sort_by: Option<SortBy>,
) -> Result<WorkspacePage, ApiError> {
    let caller = caller(ctx).await?;
    let page = page(limit, offset, sort_by.as_ref(), "displayName")?;
    let filters = filters.unwrap_or_default();
    check_filter("filters.ids", filters.ids.as_deref())?;
    check_filter("filters.slugs", filters.slugs.as_deref())?;
    let filters = DomainFilters {
        ids: filters.ids.map(|ids| {
            ids.into_iter()
                .map(|id| taxbridge_domain::ids::WorkspaceId::from_string(id.0))
                .collect()
        }),
        slugs: filters.slugs,
    };
    let workspaces = &services(ctx).workspaces;
    Ok(if selects_only(ctx, "Workspace", key_fields()) {
        let keys = workspaces.list_keys(caller, &filters, page).await?;
        WorkspacePage::Keys(keys.into_iter().map(Into::into).collect())
    } else {
        let list = workspaces.list(caller, &filters, page).await?;
        WorkspacePage::Whole(list.into_iter().map(Into::into).collect())
    })
}

#[derive(Default)]
pub struct WorkspaceMutation;

#[Object]
impl WorkspaceMutation {
    /// Create a workspace (one tax firm). Partner accounts only.
    async fn create_workspace(
        &self,
        ctx: &Context<'_>,
        input: CreateWorkspaceInput,
    ) -> Result<Workspace, ApiError> {
        let caller = caller(ctx).await?;
        let input = NewWorkspace {
            display_name: input.display_name,
            metadata: input.metadata.map(|j| j.0),
            firm_size: input.firm_size,
        };
        let workspace = services(ctx).workspaces.create(caller, input).await?;
        Ok(workspace.into())
    }

    /// Add users by email, creating accounts that do not exist yet; no invitation email is sent. Idempotent.
    async fn add_users_to_the_workspace(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        user_emails: Vec<String>,
    ) -> Result<Vec<WorkspaceMember>, ApiError> {
        let caller = caller(ctx).await?;
        let access = services(ctx)
            .workspaces
            .reach(caller, &workspace_id)
            .await?;
        let members = services(ctx)
            .workspaces
            .add_users(&access, &user_emails, &Who::caller(caller))
            .await?;
        Ok(members.into_iter().map(Into::into).collect())
    }

    /// Remove one member from a workspace; their sessions and tokens lose access to it at once.
    async fn remove_user_from_the_workspace(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        user_id: ID,
    ) -> Result<bool, ApiError> {
        let caller = caller(ctx).await?;
        let access = services(ctx)
            .workspaces
            .reach(caller, &workspace_id)
            .await?;
        services(ctx)
            .workspaces
            .remove_user(&access, &user_id, &Who::caller(caller))
            .await
            .map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::registry::MetaType;

    fn fields_of<T: OutputType>() -> Vec<(String, String)> {
        let mut registry = Registry::default();
        T::create_type_info(&mut registry);
        match registry.types.get("Workspace") {
            Some(MetaType::Object { fields, .. }) => fields
                .values()
                .map(|field| (field.name.clone(), field.ty.clone()))
                .collect(),
            _ => panic!("Workspace is an object type"),
        }
    }

    /// The narrow read answers as `Workspace` would: each of its fields is a field of
    /// `Workspace` with the same type, so reading keys can never answer a name or a type the
    /// schema does not have.
    #[test]
    fn a_workspace_key_serves_fields_of_workspace() {
        let served = fields_of::<Workspace>();
        let keys = fields_of::<WorkspaceKey>();
        assert!(!keys.is_empty());
        for field in &keys {
            assert!(
                served.contains(field),
                "{field:?} is not a field of Workspace"
            );
        }
        let mut names: Vec<_> = key_fields().names().iter().cloned().collect();
        names.sort();
        assert_eq!(names, ["id", "slug"]);
    }
}
