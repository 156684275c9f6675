//! The proof of reach: a [`WorkspaceAccess`] is made only by [`super::Workspaces::reach`]
//! (its fields are this module's), so an operation that takes one cannot run unchecked.

use super::model::*;

/// Why a caller reaches a workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    Member(Role),
    OwningPartner,
}

/// Proof that a caller reaches a workspace, and how. Only [`Workspaces::reach`] makes one.
#[derive(Clone, Debug)]
pub struct WorkspaceAccess {
    pub(super) workspace: Workspace,
    pub(super) reach: Reach,
}

impl WorkspaceAccess {
    pub fn workspace(&self) -> &Workspace {
        &self.workspace
    }

    pub fn reach(&self) -> Reach {
        self.reach
    }

    /// Adding and removing members: a workspace admin, or the owning partner.
    pub(super) fn require_manager(&self) -> Result<(), WorkspaceError> {
        match self.reach {
            Reach::OwningPartner | Reach::Member(Role::Admin) => Ok(()),
            Reach::Member(Role::User) => Err(WorkspaceError::Forbidden(
                "Only a workspace admin or the partner that created the workspace can change its members.".into(),
            )),
        }
    }
}
