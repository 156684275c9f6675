//! Workspaces (one tax firm each), their members, and the one rule that decides who reaches
//! what (spec §3).
//!
//! Every operation on a workspace's data takes a [`WorkspaceAccess`], and the only way to get
//! one is [`Workspaces::reach`], which checks the caller against the workspace: a member (with
//! a role) or the partner that created it. A resolver that skipped the check would have no
//! access value to pass, so it would not compile. A workspace outside the caller's reach is
//! [`WorkspaceError::NotFound`], exactly like one that does not exist.
//!
//! A reach that was found is trusted for a short time (the same promise as a key revocation,
//! `auth.revocation_check_seconds`): it is one read per request on every workspace operation,
//! and on SQLite under writes it cost as much as the rest of `startProviderConnection`'s
//! reads. Workspaces never change once created and a role is never changed, so the only thing
//! that ends a reach is removing a member. On the node that removes one, the removed member's
//! reach ends at once; on other nodes, within the promise. A reach that was not found is never
//! kept, so a workspace is reachable as soon as a member is added.

use crate::ttl_map::TtlMap;
use crate::{
    accounts::{Account, AccountStore, AccountType},
    email::Email,
    identity::{Caller, OWNER_EMAIL},
    ids::{AccountId, WorkspaceId},
    lists::Page,
    store::{StoreError, StoreResult},
    time::Timestamp,
};
use async_trait::async_trait;
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};
use std::time::Duration;

/// Where workspaces and their members are kept.
#[async_trait]
pub trait WorkspaceStore: Send + Sync + 'static {
    /// Fails with [`StoreError::Conflict`] when the slug is taken.
    async fn insert_workspace(&self, workspace: &Workspace) -> StoreResult<()>;
    /// A workspace and, if the account is a member, its role there.
    async fn workspace_with_role(
        &self,
        id: &WorkspaceId,
        account: &AccountId,
    ) -> StoreResult<Option<(Workspace, Option<Role>)>>;
    /// The workspaces an account reaches: its memberships, or for a partner the workspaces it
    /// created.
    async fn workspaces_reached_by(
        &self,
        account: &Account,
        filters: &WorkspaceFilters,
        page: Page,
    ) -> StoreResult<Vec<Workspace>>;
    /// [`workspaces_reached_by`](Self::workspaces_reached_by) reading only ids and slugs: the
    /// same workspaces in the same order.
    async fn workspace_keys_reached_by(
        &self,
        account: &Account,
        filters: &WorkspaceFilters,
        page: Page,
    ) -> StoreResult<Vec<WorkspaceKey>>;
    /// Adds the accounts with these emails (creating customer accounts that do not exist) as
    /// members with `role`, leaving existing members as they are. One member per email, in
    /// order, all in one transaction.
    async fn add_members(
        &self,
        workspace: &WorkspaceId,
        emails: &[Email],
        role: Role,
        now: Timestamp,
    ) -> StoreResult<Vec<Member>>;
    /// False when the account was not a member.
    async fn remove_member(
        &self,
        workspace: &WorkspaceId,
        account: &AccountId,
    ) -> StoreResult<bool>;
    /// Members, oldest membership first.
    async fn members_of(&self, workspace: &WorkspaceId, page: Page) -> StoreResult<Vec<Member>>;
}

pub const MAX_DISPLAY_NAME: usize = 200;
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
pub const FIRM_SIZES: [&str; 5] = ["xs", "sm", "md", "lg", "xl"];
pub const MAX_EMAILS_PER_CALL: usize = 500;
/// The longest path a deep link may carry.
pub const MAX_DEEP_LINK_PATH: usize = 2 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum WorkspaceType {
    /// Created by a partner account, which reaches it from then on.
    Partner,
    /// Created by an operator for a firm that signed up directly.
    Customer,
}

impl WorkspaceType {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(raw: &str) -> Option<Self> {
        raw.parse().ok()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(raw: &str) -> Option<Self> {
        raw.parse().ok()
    }
}

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

fn invalid(field: &str, message: impl Into<String>) -> WorkspaceError {
    WorkspaceError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Why a caller reaches a workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    Member(Role),
    OwningPartner,
}

/// Proof that a caller reaches a workspace, and how. Only [`Workspaces::reach`] makes one.
#[derive(Clone, Debug)]
pub struct WorkspaceAccess {
    workspace: Workspace,
    reach: Reach,
}

impl WorkspaceAccess {
    pub fn workspace(&self) -> &Workspace {
        &self.workspace
    }

    pub fn reach(&self) -> Reach {
        self.reach
    }

    /// Adding and removing members: a workspace admin, or the owning partner.
    fn require_manager(&self) -> Result<(), WorkspaceError> {
        match self.reach {
            Reach::OwningPartner | Reach::Member(Role::Admin) => Ok(()),
            Reach::Member(Role::User) => Err(WorkspaceError::Forbidden(
                "Only a workspace admin or the partner that created the workspace can change its members.".into(),
            )),
        }
    }
}

/// The slug a display name gives (spec §4): lower-case ASCII letters and digits, every run of
/// anything else one hyphen, none at either end. Letters with accents lose them first.
pub fn slugify(display_name: &str) -> String {
    let mut slug = String::with_capacity(display_name.len());
    let mut pending_hyphen = false;
    for c in display_name.chars().flat_map(fold_accent) {
        if c.is_ascii_alphanumeric() {
            if pending_hyphen && !slug.is_empty() {
                slug.push('-');
            }
            pending_hyphen = false;
            slug.push(c.to_ascii_lowercase());
        } else {
            pending_hyphen = true;
        }
    }
    slug.truncate(80);
    while slug.ends_with('-') {
        slug.pop();
    }
    if slug.is_empty() {
        "workspace".to_owned()
    } else {
        slug
    }
}

fn fold_accent(c: char) -> Vec<char> {
    let folded = match c {
        'à'..='å' | 'À'..='Å' => 'a',
        'ç' | 'Ç' => 'c',
        'è'..='ë' | 'È'..='Ë' => 'e',
        'ì'..='ï' | 'Ì'..='Ï' => 'i',
        'ñ' | 'Ñ' => 'n',
        'ò'..='ö' | 'Ò'..='Ö' | 'ø' | 'Ø' => 'o',
        'ù'..='ü' | 'Ù'..='Ü' => 'u',
        'ý' | 'ÿ' | 'Ý' => 'y',
        'ß' => return vec!['s', 's'],
        other => other,
    };
    vec![folded]
}

/// `base` with a random suffix of six lower-case letters and digits (36^6, about 2 billion):
/// the slug of a workspace whose base slug is taken.
pub fn suffixed_slug(base: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..6)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect();
    format!("{base}-{suffix}")
}

/// A deep link into a workspace (spec §8): `<base>/sign-in?deep_link=<encoded /w/{slug}{path}>`.
pub fn deep_link(
    public_base_url: &str,
    slug: &str,
    path: Option<&str>,
) -> Result<String, WorkspaceError> {
    let path = path.unwrap_or("");
    if path.len() > MAX_DEEP_LINK_PATH {
        return Err(invalid(
            "path",
            format!("a deep link's path has at most {MAX_DEEP_LINK_PATH} bytes"),
        ));
    }
    if !path.is_empty() {
        let bad = !path.starts_with('/')
            || path.starts_with("//")
            || path.contains("..")
            || path.contains("://")
            || path.contains('\\')
            || path.chars().any(|c| c.is_control() || c.is_whitespace());
        if bad {
            return Err(invalid(
                "path",
                format!("`{path}` is not a path inside the workspace: start it with `/`, without `..`, a scheme or a host (e.g. `/connect/tax-software`)"),
            ));
        }
    }
    let target = format!("/w/{slug}{path}");
    Ok(format!(
        "{}/sign-in?deep_link={}",
        public_base_url.trim_end_matches('/'),
        percent_encode(&target)
    ))
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn reach_key(account: &AccountId, workspace: &str) -> String {
    format!("{account} {workspace}")
}

pub struct NewWorkspace {
    pub display_name: String,
    pub metadata: Option<serde_json::Value>,
    pub firm_size: Option<String>,
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
        self.insert(input, WorkspaceType::Partner, Some(account.id.clone()))
            .await
    }

    /// The operator's `taxbridge workspaces create`: a customer workspace, with an optional
    /// first admin (created if the email has no account yet).
    pub async fn create_for_customer(
        &self,
        display_name: &str,
        admin_email: Option<&str>,
    ) -> Result<(Workspace, Option<Member>), WorkspaceError> {
        let admin = admin_email
            .map(|e| Email::parse(e).map_err(|err| invalid("adminEmail", err.to_string())))
            .transpose()?;
        let input = NewWorkspace {
            display_name: display_name.to_owned(),
            metadata: None,
            firm_size: None,
        };
        let workspace = self.insert(input, WorkspaceType::Customer, None).await?;
        let member = match admin {
            Some(email) => self
                .store
                .add_members(&workspace.id, &[email], Role::Admin, Timestamp::now())
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
            match self.store.insert_workspace(&workspace).await {
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
            .add_members(&access.workspace.id, &parsed, Role::User, Timestamp::now())
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
    ) -> Result<bool, WorkspaceError> {
        access.require_manager()?;
        let removed = self
            .store
            .remove_member(&access.workspace.id, &AccountId::from_string(user_id))
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slugs_follow_the_spec_example() {
        assert_eq!(
            slugify("Smith & Associates Tax Firm"),
            "smith-associates-tax-firm"
        );
        assert_eq!(
            slugify("  --Müller Steuerberatung GmbH--  "),
            "muller-steuerberatung-gmbh"
        );
        assert_eq!(slugify("!!!"), "workspace");
    }

    #[test]
    fn collisions_take_a_random_suffix() {
        let a = suffixed_slug("acme");
        let b = suffixed_slug("acme");
        assert_ne!(a, b);
        for slug in [a, b] {
            let suffix = slug.strip_prefix("acme-").expect("base kept");
            assert_eq!(suffix.len(), 6);
            assert!(suffix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        }
    }

    #[test]
    fn deep_links_encode_the_workspace_path() {
        let link = deep_link(
            "https://tb.example.com/",
            "smith-cpa",
            Some("/connect/tax-software"),
        )
        .expect("ok");
        assert_eq!(
            link,
            "https://tb.example.com/sign-in?deep_link=%2Fw%2Fsmith-cpa%2Fconnect%2Ftax-software"
        );
        assert_eq!(
            deep_link("http://h", "s", None).expect("ok"),
            "http://h/sign-in?deep_link=%2Fw%2Fs"
        );
    }

    #[test]
    fn deep_links_refuse_paths_that_leave_the_workspace() {
        for bad in [
            "connect",
            "//evil.com/x",
            "/../admin",
            "/x/../../y",
            "https://evil.com",
            "/a\\b",
            "/a b",
            &format!("/{}", "a".repeat(MAX_DEEP_LINK_PATH)),
        ] {
            assert!(deep_link("http://h", "s", Some(bad)).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn slugs_are_always_url_safe(name in "\\PC{0,120}") {
            let slug = slugify(&name);
            prop_assert!(!slug.is_empty() && slug.len() <= 80);
            prop_assert!(slug.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
            prop_assert!(!slug.starts_with('-') && !slug.ends_with('-') && !slug.contains("--"));
        }
    }
}
