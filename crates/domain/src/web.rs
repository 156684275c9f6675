//! Rules of the web pages (spec §8) that hold whatever renders them. First: where sign-in may
//! send a user. `/sign-in?deep_link=…` is reached from any email or page, so the target is
//! untrusted: only a path of this origin under `/w/` is followed, judged after every layer of
//! percent-encoding is undone, and anything else goes to [`DEFAULT_LANDING`].

/// Where a user lands when the deep link is missing or refused: their workspace, or a chooser.
pub const DEFAULT_LANDING: &str = "/w/redirect/";
/// The longest deep link followed.
const MAX_DEEP_LINK_BYTES: usize = 2_048;

/// `raw` undone of percent-encoding until it no longer changes (at most a few layers);
/// `None` when it is not UTF-8 once decoded or keeps changing.
fn fully_decoded(raw: &str) -> Option<String> {
    let mut text = raw.to_owned();
    for _ in 0..4 {
        let decoded = percent_decode(&text)?;
        if decoded == text {
            return Some(text);
        }
        text = decoded;
    }
    None
}

/// Every byte but RFC 3986's unreserved characters (letters, digits, `-._~`).
const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes `text` for a path segment or a query value (deep links, `deep_link=`).
pub fn url_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, RESERVED).to_string()
}

fn percent_decode(text: &str) -> Option<String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

/// The path sign-in redirects to for `deep_link`: the link itself when it is a plain path of
/// this origin under `/w/`, else [`DEFAULT_LANDING`]. Refused: other origins (`//host`,
/// `/\host`, `https:`), encoded schemes and slashes, `.` and `..` segments, backslashes,
/// control characters and whitespace, and anything over 2 KiB.
pub fn safe_landing(deep_link: Option<&str>) -> String {
    let Some(raw) = deep_link else {
        return DEFAULT_LANDING.to_owned();
    };
    let followed = (|| {
        // A redirect's Location is ASCII: a link that is not was not built by the gateway.
        if raw.len() > MAX_DEEP_LINK_BYTES || !raw.is_ascii() {
            return None;
        }
        let decoded = fully_decoded(raw)?;
        let path = decoded.split(['?', '#']).next().unwrap_or_default();
        let plain = decoded.starts_with("/w/")
            && !decoded.contains('\\')
            && !decoded.contains("://")
            && !decoded.chars().any(|c| c.is_control() || c.is_whitespace())
            && !path
                .split('/')
                .any(|segment| segment == "." || segment == "..")
            && !path.contains("//");
        // The link as sent, when it means what its decoded form says; a decoded form that
        // differs (it hid a slash or a scheme) was refused above.
        plain.then(|| raw.to_owned())
    })();
    followed.unwrap_or_else(|| DEFAULT_LANDING.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_origin_under_w_are_followed() {
        for good in [
            "/w/smith-cpa",
            "/w/smith-cpa/connect/tax-software",
            "/w/smith-cpa/works/wrk_01?tab=files",
            "/w/redirect/connect/tax-software",
        ] {
            assert_eq!(safe_landing(Some(good)), good, "{good}");
        }
        for bad in [
            "//evil.example",
            "//evil.example/w/x",
            "/\\evil.example",
            "/w/\\evil.example",
            "https://evil.example/w/x",
            "http:/w/x",
            "javascript:alert(1)",
            "%2F%2Fevil.example",
            "/%2Fevil.example",
            "%252F%252Fevil.example",
            "/w/%2E%2E/settings",
            "/w/../x",
            "/w/./x",
            "/w/a/../../x",
            "/w//evil.example",
            "/w/x%0d%0aSet-Cookie:a=b",
            "/w/x y",
            "/W/x",
            "/settings/developer",
            "w/x",
            "",
            "/w/https://evil.example",
            "/w/%5Cevil",
            "/w/caf\u{e9}",
        ] {
            assert_eq!(safe_landing(Some(bad)), DEFAULT_LANDING, "{bad:?}");
        }
        assert_eq!(safe_landing(None), DEFAULT_LANDING);
        assert_eq!(
            safe_landing(Some(&format!("/w/{}", "a".repeat(3000)))),
            DEFAULT_LANDING
        );
    }

    #[test]
    fn the_api_s_deep_links_land_where_they_point() {
        let link = crate::workspaces::deep_link(
            "https://tb.example",
            "smith-cpa",
            Some("/connect/tax-software"),
        )
        .expect("link");
        let encoded = link.split("deep_link=").nth(1).expect("param");
        let target = fully_decoded(encoded).expect("decodes");
        assert_eq!(
            safe_landing(Some(&target)),
            "/w/smith-cpa/connect/tax-software"
        );
    }
}
