//! What a workspace is: its row, its type, its members and their roles, how lists filter it,
//! and the errors the service answers.

use crate::words::Word;
use crate::{
    accounts::Account,
    ids::{AccountId, WorkspaceId},
    store::StoreError,
    time::Timestamp,
};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum WorkspaceType {
    /// Created by a partner account, which reaches it from then on.
    Partner,
    /// Created by an operator for a firm that signed up directly.
    Customer,
}

impl Word for WorkspaceType {}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum Role {
    Admin,
    User,
}

impl Word for Role {}

#[derive(Clone, Debug, PartialEq)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub slug: String,
    pub display_name: String,
    /// `active` or `suspended`.
    pub status: String,
    pub workspace_type: WorkspaceType,
    pub firm_size: Option<String>,
    pub metadata: Option<serde_json::Value>,
    /// The partner that created it (partner workspaces only).
    pub owner_partner_id: Option<AccountId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What identifies a workspace: all a list reads when a client asks only for ids and slugs
/// (reading every column of 50 rows is most of such a request's cost).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkspaceKey {
    pub id: WorkspaceId,
    pub slug: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub account: Account,
    pub role: Role,
}

/// What `me.workspaces(filters)` narrows by.
#[derive(Clone, Debug, Default)]
pub struct WorkspaceFilters {
    pub ids: Option<Vec<WorkspaceId>>,
    pub slugs: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("{message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("No workspace has this id, or it is not one you can reach.")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct NewWorkspace {
    pub display_name: String,
    pub metadata: Option<serde_json::Value>,
    pub firm_size: Option<String>,
}

pub(crate) fn invalid(field: &str, message: impl Into<String>) -> WorkspaceError {
    WorkspaceError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}
