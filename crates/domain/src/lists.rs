//! Paging and sorting, the same for every list (spec §7): `limit` 1–500 (default 50), `offset`
//! from 0, and a sort field out of the list's own allowed set, `createdAt` ascending by default.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortField {
    CreatedAt,
    UpdatedAt,
    /// The list's name field: `displayName` for workspaces, `name` elsewhere.
    Name,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub offset: u64,
    pub sort: SortField,
    pub descending: bool,
}

impl Page {
    /// The first `limit` items, most recently updated first.
    pub fn newest_first(limit: u32) -> Self {
        Page {
            limit,
            offset: 0,
            sort: SortField::UpdatedAt,
            descending: true,
        }
    }
}

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;
/// The most values one list filter (`ids`, `slugs`, …) may name.
pub const MAX_FILTER_VALUES: usize = 500;

/// Every list filter goes through this: a filter naming more values than a page can hold is
/// a mistake (or an attempt to make the database bind tens of thousands of parameters).
pub fn check_filter<T>(field: &'static str, values: Option<&[T]>) -> Result<(), InvalidPage> {
    match values {
        Some(values) if values.len() > MAX_FILTER_VALUES => Err(InvalidPage {
            field,
            message: format!(
                "{field} names {} values; a filter takes at most {MAX_FILTER_VALUES}. Split the request.",
                values.len()
            ),
        }),
        _ => Ok(()),
    }
}

/// `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
pub fn parse_limit(limit: Option<i32>) -> Result<u32, InvalidPage> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT as i32).contains(&n) => Ok(n as u32),
        Some(n) => Err(InvalidPage {
            field: "limit",
            message: format!("limit must be between 1 and {MAX_LIMIT} (got {n})"),
        }),
    }
}

/// `offset`: 0 or more, 0 when absent.
pub fn parse_offset(offset: Option<i32>) -> Result<u64, InvalidPage> {
    match offset {
        None => Ok(0),
        Some(n) if n >= 0 => Ok(n as u64),
        Some(n) => Err(InvalidPage {
            field: "offset",
            message: format!("offset must be 0 or more (got {n})"),
        }),
    }
}

/// A paging argument that cannot be served, naming the argument.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidPage {
    pub field: &'static str,
    pub message: String,
}

impl Page {
    /// `name_field` is how the list spells its name field (`displayName` or `name`).
    pub fn parse(
        limit: Option<i32>,
        offset: Option<i32>,
        sort: Option<(&str, bool)>,
        name_field: &str,
    ) -> Result<Self, InvalidPage> {
        let (limit, offset) = (parse_limit(limit)?, parse_offset(offset)?);
        let (sort, descending) = match sort {
            None => (SortField::CreatedAt, false),
            Some((field, descending)) => {
                let sort = match field {
                    "createdAt" => SortField::CreatedAt,
                    "updatedAt" => SortField::UpdatedAt,
                    f if f == name_field => SortField::Name,
                    other => {
                        return Err(InvalidPage {
                            field: "sortBy.field",
                            message: format!(
                                "cannot sort by `{other}`; sortBy.field must be one of createdAt, updatedAt, {name_field}"
                            ),
                        })
                    }
                };
                (sort, descending)
            }
        };
        Ok(Self {
            limit,
            offset,
            sort,
            descending,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_fifty_from_the_start_oldest_first() {
        let page = Page::parse(None, None, None, "displayName").expect("defaults");
        assert_eq!(
            page,
            Page {
                limit: 50,
                offset: 0,
                sort: SortField::CreatedAt,
                descending: false
            }
        );
    }

    #[test]
    fn out_of_range_paging_names_the_argument() {
        assert_eq!(
            Page::parse(Some(501), None, None, "name")
                .expect_err("limit")
                .field,
            "limit"
        );
        assert_eq!(
            Page::parse(Some(0), None, None, "name")
                .expect_err("limit")
                .field,
            "limit"
        );
        assert_eq!(
            Page::parse(None, Some(-1), None, "name")
                .expect_err("offset")
                .field,
            "offset"
        );
    }

    #[test]
    fn filters_are_capped_and_name_their_field() {
        let ids = vec![0; MAX_FILTER_VALUES];
        assert!(check_filter("filters.ids", Some(&ids[..])).is_ok());
        assert!(check_filter::<u8>("filters.ids", None).is_ok());
        let too_many = vec![0; MAX_FILTER_VALUES + 1];
        let err = check_filter("filters.ids", Some(&too_many[..])).expect_err("capped");
        assert_eq!(err.field, "filters.ids");
        assert!(err.message.contains("501"), "{}", err.message);
    }

    #[test]
    fn only_the_lists_own_fields_sort() {
        let page = Page::parse(None, None, Some(("displayName", true)), "displayName").expect("ok");
        assert_eq!((page.sort, page.descending), (SortField::Name, true));
        let err = Page::parse(None, None, Some(("slug", false)), "displayName").expect_err("slug");
        assert!(
            err.message.contains("createdAt, updatedAt, displayName"),
            "{}",
            err.message
        );
    }
}
