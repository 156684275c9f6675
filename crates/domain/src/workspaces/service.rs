//! `Workspaces`: creating workspaces, adding and removing members, listing, and the one rule
//! that decides who reaches what.

use super::{
    access::*, links::*, model::*, port::WorkspaceStore, FIRM_SIZES, MAX_DISPLAY_NAME,
    MAX_EMAILS_PER_CALL, MAX_METADATA_BYTES,
};
use crate::ttl_map::TtlMap;
use crate::words::Word;
use crate::{
    accounts::{Account, AccountStore, AccountType},
    audit::{Action, Who},
    email::Email,
    identity::{Caller, OWNER_EMAIL},
    ids::{AccountId, WorkspaceId},
    lists::Page,
    store::StoreError,
    time::Timestamp,
};
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};
use std::time::Duration;

fn reach_key(account: &AccountId, workspace: &str) -> String {
    format!("{account} {workspace}")
}

pub struct Workspaces {
    store: Arc<dyn WorkspaceStore>,
    accounts: Arc<dyn AccountStore>,
    /// Reaches found in the database, by account and workspace.
    reached: TtlMap<String, WorkspaceAccess>,
    /// Member removals on this node so far: a reach read while one happened is not kept.
    removals: AtomicU64,
}

impl Workspaces {
    /// Trusts a found reach for the default promise, the same as a key revocation's.
    pub fn new<S: WorkspaceStore + AccountStore>(store: Arc<S>) -> Self {
        Self::trusting_reach_for(
            store,
            crate::identity::IdentitySettings::default().grant_cache_ttl,
        )
    }

    /// Trusts a found reach for at most `promise` (`auth.revocation_check_seconds`): the
    /// longest a member removed on another node keeps reaching the workspace here.
    pub fn trusting_reach_for<S: WorkspaceStore + AccountStore>(
        store: Arc<S>,
        promise: Duration,
    ) -> Self {
        Self {
            store: store.clone(),
            accounts: store,
            reached: TtlMap::new(crate::identity::trusted_for(promise), 100_000),
            removals: AtomicU64::new(0),
        }
    }

    /// The caller's access to a workspace, or NotFound when it is out of reach or missing.
    pub async fn reach(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<WorkspaceAccess, WorkspaceError> {
        self.reach_as(caller.account(), id).await
    }

    /// [`reach`](Self::reach) for an account (a signed-in web user, who holds no API key).
    pub async fn reach_as(
        &self,
        account: &Account,
        id: &str,
    ) -> Result<WorkspaceAccess, WorkspaceError> {
        let key = reach_key(&account.id, id);
        if let Some(access) = self.reached.get(&key) {
            return Ok(access);
        }
        let removals = self.removals.load(Ordering::Acquire);
        let found = self
            .store
            .workspace_with_role(&WorkspaceId::from_string(id), &account.id)
            .await?;
        let (workspace, role) = found.ok_or(WorkspaceError::NotFound)?;
        let reach = match role {
            Some(role) => Reach::Member(role),
            None if account.account_type == AccountType::Partner
                && workspace.owner_partner_id.as_ref() == Some(&account.id) =>
            {
                Reach::OwningPartner
            }
            None => return Err(WorkspaceError::NotFound),
        };
        let access = WorkspaceAccess { workspace, reach };
        self.reached.insert(key.clone(), access.clone());
        // A removal that began after this read started may have dropped its entry before the
        // insert above: then the entry is dropped here (see `remove_user`).
        if self.removals.load(Ordering::Acquire) != removals {
            self.reached.invalidate(&key);
        }
        Ok(access)
    }

    /// `createWorkspace`: partners only.
    pub async fn create(
        &self,
        caller: &Caller,
        input: NewWorkspace,
    ) -> Result<Workspace, WorkspaceError> {
        let account = caller.account();
        if account.account_type != AccountType::Partner {
            return Err(WorkspaceError::Forbidden(
                "Only partner accounts can create workspaces; a firm's workspace is created by its partner or by the operator.".into(),
            ));
        }
        self.insert(
            input,
            WorkspaceType::Partner,
            Some(account.id.clone()),
            &Who::caller(caller),
        )
        .await
    }

    /// The operator's `taxbridge workspaces create`: a customer workspace, with an optional
    /// first admin (created if the email has no account yet).
    pub async fn create_for_customer(
        &self,
        display_name: &str,
        admin_email: Option<&str>,
        who: &Who,
    ) -> Result<(Workspace, Option<Member>), WorkspaceError> {
        let admin = admin_email
            .map(|e| Email::parse(e).map_err(|err| invalid("adminEmail", err.to_string())))
            .transpose()?;
        let input = NewWorkspace {
            display_name: display_name.to_owned(),
            metadata: None,
            firm_size: None,
        };
        let workspace = self
            .insert(input, WorkspaceType::Customer, None, who)
            .await?;
        let member = match admin {
            Some(email) => self
                .store
                .add_members(
                    &workspace.id,
                    &[email],
                    Role::Admin,
                    Timestamp::now(),
                    &who.event(Action::MemberAdded).in_workspace(&workspace.id),
                )
                .await?
                .into_iter()
                .next(),
            None => None,
        };
        Ok((workspace, member))
    }

    async fn insert(
        &self,
        input: NewWorkspace,
        workspace_type: WorkspaceType,
        owner: Option<AccountId>,
        who: &Who,
    ) -> Result<Workspace, WorkspaceError> {
        let display_name = input.display_name.trim().to_owned();
        if display_name.is_empty() {
            return Err(invalid(
                "input.displayName",
                "displayName must not be blank",
            ));
        }
        if display_name.chars().count() > MAX_DISPLAY_NAME {
            return Err(invalid(
                "input.displayName",
                format!("displayName has at most {MAX_DISPLAY_NAME} characters"),
            ));
        }
        if let Some(why) = crate::text::unprintable(&display_name) {
            return Err(invalid("input.displayName", format!("displayName {why}")));
        }
        if let Some(metadata) = &input.metadata {
            if !metadata.is_object() {
                return Err(invalid(
                    "input.metadata",
                    "metadata must be a JSON object, e.g. {\"crmId\": \"A-17\"}",
                ));
            }
            if metadata.to_string().len() > MAX_METADATA_BYTES {
                return Err(invalid("input.metadata", "metadata is larger than 16 KiB"));
            }
        }
        if let Some(size) = &input.firm_size {
            if !FIRM_SIZES.contains(&size.as_str()) {
                return Err(invalid(
                    "input.firmSize",
                    format!("firmSize `{size}` is not one of xs, sm, md, lg, xl"),
                ));
            }
        }
        let base = slugify(&display_name);
        let now = Timestamp::now();
        // The base slug if it is free, else the base with a random suffix: a counter would
        // tell a caller how many other tenants use the name, and a crafted name could block
        // it for everyone. The unique index settles races; a few tries always find one free.
        for attempt in 0..8 {
            let workspace = Workspace {
                id: WorkspaceId::generate(),
                slug: if attempt == 0 {
                    base.clone()
                } else {
                    suffixed_slug(&base)
                },
                display_name: display_name.clone(),
                status: "active".into(),
                workspace_type,
                firm_size: input.firm_size.clone(),
                metadata: input.metadata.clone(),
                owner_partner_id: owner.clone(),
                created_at: now,
                updated_at: now,
            };
            let event = who
                .event(Action::WorkspaceCreated)
                .in_workspace(&workspace.id)
                .target("workspace", &workspace.id)
                .with("slug", workspace.slug.as_str())
                .with("type", workspace_type.as_str());
            match self.store.insert_workspace(&workspace, &event).await {
                Ok(()) => return Ok(workspace),
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(WorkspaceError::Store(StoreError::Backend(
            format!("no free slug for `{base}` after 8 tries").into(),
        )))
    }

    /// `addUsersToTheWorkspace`: every email valid or none added; existing accounts reused;
    /// idempotent; one member per email, in the order given.
    pub async fn add_users(
        &self,
        access: &WorkspaceAccess,
        emails: &[String],
        who: &Who,
    ) -> Result<Vec<Member>, WorkspaceError> {
        access.require_manager()?;
        if emails.is_empty() {
            return Err(invalid(
                "userEmails",
                "userEmails must name at least one email",
            ));
        }
        if emails.len() > MAX_EMAILS_PER_CALL {
            return Err(invalid(
                "userEmails",
                format!("at most {MAX_EMAILS_PER_CALL} emails per call"),
            ));
        }
        let mut parsed = Vec::with_capacity(emails.len());
        for (i, raw) in emails.iter().enumerate() {
            let email = Email::parse(raw)
                .map_err(|err| invalid(&format!("userEmails[{i}]"), err.to_string()))?;
            parsed.push(email);
        }
        // Only a firm's staff can be members: a partner's account, or the operator's own,
        // joining a workspace would reach into a tenant it does not belong to.
        let existing = self.accounts.accounts_by_emails(&parsed).await?;
        for (i, email) in parsed.iter().enumerate() {
            let found = existing.iter().find(|a| &a.email == email);
            if found.is_some_and(|a| a.account_type != AccountType::Customer)
                || email.as_str() == OWNER_EMAIL
            {
                return Err(invalid(
                    &format!("userEmails[{i}]"),
                    format!("{email} belongs to a partner or operator account, which cannot be a workspace member; add the firm's staff by their own emails"),
                ));
            }
        }
        let mut members = self
            .store
            .add_members(
                &access.workspace.id,
                &parsed,
                Role::User,
                Timestamp::now(),
                &who.event(Action::MemberAdded)
                    .in_workspace(&access.workspace.id),
            )
            .await?;
        // An account that existed before this call may have a name its owner gave it, in
        // another tenant: the answer does not repeat it.
        for member in &mut members {
            if existing.iter().any(|a| a.id == member.account.id) {
                member.account.name = None;
            }
        }
        Ok(members)
    }

    /// `removeUserFromTheWorkspace`: false when the account was not a member.
    pub async fn remove_user(
        &self,
        access: &WorkspaceAccess,
        user_id: &str,
        who: &Who,
    ) -> Result<bool, WorkspaceError> {
        access.require_manager()?;
        let event = who
            .event(Action::MemberRemoved)
            .in_workspace(&access.workspace.id)
            .target("account", user_id);
        let removed = self
            .store
            .remove_member(
                &access.workspace.id,
                &AccountId::from_string(user_id),
                &event,
            )
            .await?;
        // After the delete: a reach read before it either is dropped here, or sees the count
        // change and drops itself.
        self.removals.fetch_add(1, Ordering::AcqRel);
        self.reached.invalidate(&reach_key(
            &AccountId::from_string(user_id),
            access.workspace.id.as_str(),
        ));
        Ok(removed)
    }

    pub async fn members(
        &self,
        access: &WorkspaceAccess,
        page: Page,
    ) -> Result<Vec<Member>, WorkspaceError> {
        Ok(self.store.members_of(&access.workspace.id, page).await?)
    }

    /// `me.workspaces`: a customer's memberships, or every workspace a partner created.
    pub async fn list(
        &self,
        caller: &Caller,
        filters: &WorkspaceFilters,
        page: Page,
    ) -> Result<Vec<Workspace>, WorkspaceError> {
        self.list_for(caller.account(), filters, page).await
    }

    /// [`list`](Self::list) for an account (a signed-in web user).
    pub async fn list_for(
        &self,
        account: &Account,
        filters: &WorkspaceFilters,
        page: Page,
    ) -> Result<Vec<Workspace>, WorkspaceError> {
        Ok(self
            .store
            .workspaces_reached_by(account, filters, page)
            .await?)
    }

    /// [`list`](Self::list) reading only ids and slugs: the same workspaces in the same order.
    pub async fn list_keys(
        &self,
        caller: &Caller,
        filters: &WorkspaceFilters,
        page: Page,
    ) -> Result<Vec<WorkspaceKey>, WorkspaceError> {
        Ok(self
            .store
            .workspace_keys_reached_by(caller.account(), filters, page)
            .await?)
    }
}
