//! Names people type (a workspace's display name, an account's name, a key's name) are shown
//! back to other people: in GraphQL answers, the web app, the CLI and logs. Control characters
//! and the bidirectional overrides that make text display in another order than it is stored
//! (U+202E makes `exe.txt` read as `txt.exe`) have no place in them.

/// Why `text` cannot be a name, if it cannot: the first character that is not allowed.
pub fn unprintable(text: &str) -> Option<String> {
    let bad = text.chars().find(|&c| {
        c.is_control()
            || matches!(c,
                '\u{200E}' | '\u{200F}' | '\u{061C}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}')
    })?;
    Some(format!(
        "contains the character U+{:04X}, which a name may not: control characters and text-direction overrides are refused",
        u32::from(bad)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass_in_any_script() {
        for name in [
            "Smith & Associates",
            "Müller GmbH",
            "株式会社",
            "مكتب",
            "O'Brien",
        ] {
            assert_eq!(unprintable(name), None, "{name}");
        }
    }

    #[test]
    fn control_and_direction_characters_are_named() {
        assert!(unprintable("a\0b").is_some_and(|m| m.contains("U+0000")));
        assert!(unprintable("invoice\u{202E}fdp.exe").is_some_and(|m| m.contains("U+202E")));
        assert!(unprintable("tab\there").is_some());
        assert!(unprintable("\u{2066}x").is_some());
    }
}
