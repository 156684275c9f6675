//! Slugs (spec §4) and deep links into a workspace (spec §8).

use super::{model::*, MAX_DEEP_LINK_PATH};

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
        crate::web::url_encode(&target)
    ))
}
