//! Paging and sorting arguments, the same on every list (spec §7): `limit`, `offset` and
//! `sortBy`, read into the domain's [`Page`]. List filters are capped here too, so every list
//! refuses the same way.

use crate::error::ApiError;
use async_graphql::{Enum, InputObject};
use taxbridge_domain::lists::Page;

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

/// The page a list's arguments ask for; `name_field` is how the list spells its name field
/// (`displayName` or `name`).
pub fn page(
    limit: Option<i32>,
    offset: Option<i32>,
    sort: Option<&SortBy>,
    name_field: &str,
) -> Result<Page, ApiError> {
    let sort = sort.map(|s| (s.field.as_str(), s.order == SortByOrder::Desc));
    Ok(Page::parse(limit, offset, sort, name_field)?)
}
