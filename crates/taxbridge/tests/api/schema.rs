//! The committed `schema.graphql` is what the code serves. Regenerate it with
//! `cargo run -q -- schema > schema.graphql` after changing the API.

#[test]
fn the_committed_schema_matches_the_code() {
    let committed = include_str!("../../../../schema.graphql");
    assert!(
        committed == taxbridge_api::sdl(),
        "schema.graphql is stale: run `cargo run -q -- schema > schema.graphql`"
    );
}

#[test]
fn every_operation_of_the_customer_guide_is_in_the_schema() {
    let sdl = taxbridge_api::sdl();
    for needle in [
        "loginViaPersonalApiToken(token: String!): LoginResult!",
        "accessToken: String!",
        "me: Me!",
        "id: ID!",
        "name: String",
    ] {
        assert!(sdl.contains(needle), "missing `{needle}`");
    }
}

#[test]
fn published_descriptions_carry_no_internal_tags() {
    let sdl = taxbridge_api::sdl();
    for tag in ["(doc)", "(ours)"] {
        assert!(!sdl.contains(tag), "the published schema still says {tag}");
    }
}
