//! Login and `me`: the customer guide's steps 2 and 3.

use super::{caller, rate_limits, request, services, Date};
use crate::error::ApiError;
use async_graphql::{Context, Enum, Object, SimpleObject, ID};
use taxbridge_domain::{
    accounts::{Account, AccountType as DomainAccountType},
    identity::AuthError,
};

#[derive(Default)]
pub struct IdentityQuery;

#[derive(Default)]
pub struct IdentityMutation;

#[derive(SimpleObject)]
pub struct LoginResult {
    /// A JWT (HS256 by default) to send as `Authorization: Bearer <accessToken>`.
    access_token: String,
    /// When the token stops working; log in again before then.
    expires_at: Date,
    /// Always `Bearer`.
    token_type: String,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(rename_items = "lowercase")]
pub enum AccountType {
    Customer,
    Partner,
}

impl From<DomainAccountType> for AccountType {
    fn from(t: DomainAccountType) -> Self {
        match t {
            DomainAccountType::Customer => Self::Customer,
            DomainAccountType::Partner => Self::Partner,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Me {
    id: ID,
    email: String,
    name: Option<String>,
    account_type: AccountType,
}

impl From<&Account> for Me {
    fn from(account: &Account) -> Self {
        Self {
            id: ID(account.id.to_string()),
            email: account.email.to_string(),
            name: account.name.clone(),
            account_type: account.account_type.into(),
        }
    }
}

#[async_graphql::ComplexObject]
impl Me {
    /// Workspaces the caller may act on: where it is a member, and for a partner every workspace it created.
    async fn workspaces(
        &self,
        ctx: &Context<'_>,
        filters: Option<super::workspaces::WorkspaceFilters>,
        limit: Option<i32>,
        offset: Option<i32>,
        sort_by: Option<super::lists::SortBy>,
    ) -> Result<super::workspaces::WorkspacePage, ApiError> {
        super::workspaces::my_workspaces(ctx, filters, limit, offset, sort_by).await
    }

    /// The audit log's events outside any workspace that this account did or that were done
    /// to it: its API keys created and revoked, its sign-ins. Newest first by default; sort by
    /// occurredAt.
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        filters: Option<super::audit::AuditEventFilters>,
        limit: Option<i32>,
        offset: Option<i32>,
        sort_by: Option<super::lists::SortBy>,
    ) -> Result<Vec<super::audit::AuditEvent>, ApiError> {
        let (filters, page) = super::audit::arguments(filters, limit, offset, sort_by)?;
        let events = services(ctx)
            .audit
            .of_account(caller(ctx).await?, &filters, page)
            .await?;
        Ok(events.into_iter().map(Into::into).collect())
    }
}

#[Object]
impl IdentityQuery {
    /// The account behind the access token.
    async fn me(&self, ctx: &Context<'_>) -> Result<Me, ApiError> {
        let caller = caller(ctx).await?;
        Ok(Me::from(caller.account()))
    }
}

#[Object]
impl IdentityMutation {
    /// Exchange an API key for a short-lived access token. The only operation that needs no token.
    async fn login_via_personal_api_token(
        &self,
        ctx: &Context<'_>,
        token: String,
    ) -> Result<LoginResult, ApiError> {
        let (limits, client) = (rate_limits(ctx), request(ctx).client);
        limits.login_allowed(client, &token).await?;
        let (issued, caller) = match services(ctx).identity.login(&token).await {
            Ok(done) => done,
            Err(err) => {
                if matches!(err, AuthError::InvalidApiKey) {
                    limits.login_failed(client, &token).await;
                }
                return Err(err.into());
            }
        };
        if let Some(key) = caller.key_id() {
            let _ = request(ctx).login_key.set(key.clone());
        }
        Ok(LoginResult {
            access_token: issued.token,
            expires_at: issued.expires_at.into(),
            token_type: "Bearer".to_owned(),
        })
    }
}
