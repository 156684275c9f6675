//! The provider catalog (spec §5): what a workspace can connect to. Three sources, later ones
//! winning by key: the built-in catalog (`providers.toml` beside this file, the providers
//! Filed's docs name), an optional operator file, and one entry per registered partner under
//! its provider key.
//!
//! Each provider names its input fields and which are not secret; every other input is a
//! secret, stored encrypted. `baseUrl` and `firmReferenceId` are never secret.

use serde::Deserialize;
use std::collections::BTreeMap;

pub const CATEGORIES: [&str; 3] = ["practice_management", "document_management", "tax_software"];

/// Inputs that are settings for every provider, never secrets.
pub const ALWAYS_PLAIN: [&str; 2] = ["baseUrl", "firmReferenceId"];

/// The category a partner's own entry has.
pub const PARTNER_CATEGORY: &str = "practice_management";

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct InputField {
    pub name: String,
    #[serde(default = "secret_by_default")]
    pub secret: bool,
}

fn secret_by_default() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Provider {
    pub key: String,
    pub name: String,
    pub category: String,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub inputs: Vec<InputField>,
}

impl Provider {
    /// Whether the input `name` is stored encrypted: yes unless the provider declares it not
    /// secret or it is one of [`ALWAYS_PLAIN`]. Undeclared inputs are secret.
    pub fn is_secret(&self, name: &str) -> bool {
        if ALWAYS_PLAIN.contains(&name) {
            return false;
        }
        self.inputs
            .iter()
            .find(|field| field.name == name)
            .is_none_or(|field| field.secret)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    provider: Vec<Provider>,
}

/// The built-in and operator providers, by key. Partners' entries are added where the catalog
/// is read (they live in the accounts table).
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    providers: BTreeMap<String, Provider>,
}

/// A catalog file that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
#[error("the provider catalog {source_name} cannot be used: {message}")]
pub struct CatalogError {
    pub source_name: String,
    pub message: String,
}

impl Catalog {
    /// The built-in catalog.
    pub fn built_in() -> Self {
        let mut catalog = Self::default();
        // The built-in file is part of the binary and tested below: it always parses.
        if let Ok(providers) = parse(include_str!("providers.toml"), "built into Taxbridge") {
            catalog.add(providers);
        }
        catalog
    }

    /// The built-in catalog with an operator file's entries added or overriding by key.
    pub fn with_operator_file(text: &str, source_name: &str) -> Result<Self, CatalogError> {
        let mut catalog = Self::built_in();
        catalog.add(parse(text, source_name)?);
        Ok(catalog)
    }

    fn add(&mut self, providers: Vec<Provider>) {
        for provider in providers {
            self.providers.insert(provider.key.clone(), provider);
        }
    }

    pub fn get(&self, key: &str) -> Option<&Provider> {
        self.providers.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Provider> {
        self.providers.values()
    }
}

/// The entry a registered partner has in the catalog, under its provider key.
pub fn partner_entry(provider_key: &str, name: &str) -> Provider {
    Provider {
        key: provider_key.to_owned(),
        name: name.to_owned(),
        category: PARTNER_CATEGORY.to_owned(),
        base_url: None,
        inputs: vec![
            InputField {
                name: "apiKey".into(),
                secret: true,
            },
            InputField {
                name: "securityToken".into(),
                secret: true,
            },
        ],
    }
}

/// Parses a catalog file, naming the line of a mistake.
fn parse(text: &str, source_name: &str) -> Result<Vec<Provider>, CatalogError> {
    let error = |message: String| CatalogError {
        source_name: source_name.to_owned(),
        message,
    };
    let file: CatalogFile = toml::from_str(text).map_err(|err| {
        let line = err
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
        match line {
            Some(line) => error(format!("line {line}: {}", err.message())),
            None => error(err.message().to_owned()),
        }
    })?;
    for provider in &file.provider {
        crate::accounts::validate_provider_key(&provider.key)
            .map_err(|why| error(format!("provider key `{}`: {why}", provider.key)))?;
        if !CATEGORIES.contains(&provider.category.as_str()) {
            return Err(error(format!(
                "provider `{}` has category `{}`; use one of {}",
                provider.key,
                provider.category,
                CATEGORIES.join(", ")
            )));
        }
    }
    Ok(file.provider)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_catalog_holds_the_docs_providers() {
        let catalog = Catalog::built_in();
        for (key, category) in [
            ("canopy", "practice_management"),
            ("taxdome", "practice_management"),
            ("karbon", "practice_management"),
            ("google_drive", "document_management"),
            ("sharepoint", "document_management"),
            ("drake", "tax_software"),
            ("ultratax", "tax_software"),
            ("lacerte", "tax_software"),
        ] {
            let provider = catalog.get(key).unwrap_or_else(|| panic!("{key}"));
            assert_eq!(provider.category, category);
        }
        assert!(parse(include_str!("providers.toml"), "built in").is_ok());
    }

    #[test]
    fn inputs_are_secret_unless_declared_otherwise() {
        let canopy = Catalog::built_in().get("canopy").cloned().expect("canopy");
        assert!(canopy.is_secret("apiKey"));
        assert!(canopy.is_secret("somethingUndeclared"));
        assert!(!canopy.is_secret("baseUrl"));
        assert!(!canopy.is_secret("firmReferenceId"));
        let drake = Catalog::built_in().get("drake").cloned().expect("drake");
        assert!(!drake.is_secret("accountNumber"));
    }

    #[test]
    fn an_operator_file_adds_and_overrides_and_a_mistake_names_its_line() {
        let file = "[[provider]]\nkey = \"canopy\"\nname = \"Canopy (EU)\"\ncategory = \"practice_management\"\nbase_url = \"https://eu.canopy.example\"\n\n[[provider]]\nkey = \"acme_docs\"\nname = \"Acme Docs\"\ncategory = \"document_management\"\n";
        let catalog = Catalog::with_operator_file(file, "providers.toml").expect("valid");
        assert_eq!(
            catalog.get("canopy").map(|p| p.name.as_str()),
            Some("Canopy (EU)")
        );
        assert!(catalog.get("acme_docs").is_some());
        assert!(catalog.get("drake").is_some());

        let bad = "[[provider]]\nkey = \"x\"\nname = \"X\"\ncategory = 7\n";
        let err = Catalog::with_operator_file(bad, "/etc/taxbridge/providers.toml")
            .expect_err("bad type");
        let message = err.to_string();
        assert!(
            message.contains("/etc/taxbridge/providers.toml"),
            "{message}"
        );
        assert!(message.contains("line 4"), "{message}");
        let category = "[[provider]]\nkey = \"x\"\nname = \"X\"\ncategory = \"crm\"\n";
        let err = Catalog::with_operator_file(category, "p.toml").expect_err("category");
        assert!(err.to_string().contains("`crm`"), "{err}");
    }
}
