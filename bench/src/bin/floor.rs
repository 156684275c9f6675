//! The benchmark's floor: the least a GraphQL server can do to answer `me { id name }` for a
//! bearer token. axum + async-graphql, an HS256 JWT verified per request, no database, no
//! logging, no metrics. Taxbridge's request path is measured as a ratio to this.
//!
//! Usage: `floor ADDR`. Prints `token: <jwt>` (valid for a day) and `listening on ADDR`.

use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Schema, SimpleObject, ID};
use axum::{extract::State, http::HeaderMap, routing::post, Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const SECRET: &[u8] = b"floor-benchmark-secret-32-bytes!";

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

#[derive(SimpleObject)]
struct Me {
    id: ID,
    name: Option<String>,
}

struct Caller(Option<String>);

struct Query;

#[Object]
impl Query {
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Me> {
        match &ctx.data_unchecked::<Caller>().0 {
            Some(sub) => Ok(Me {
                id: ID(sub.clone()),
                name: Some("Floor".into()),
            }),
            None => Err("UNAUTHENTICATED".into()),
        }
    }
}

type FloorSchema = Schema<Query, EmptyMutation, EmptySubscription>;

struct AppState {
    schema: FloorSchema,
    decoding: DecodingKey,
    validation: Validation,
}

async fn graphql(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Json(request): Json<async_graphql::Request>,
) -> Json<async_graphql::Response> {
    let sub = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| jsonwebtoken::decode::<Claims>(t, &state.decoding, &state.validation).ok())
        .map(|data| data.claims.sub);
    Json(state.schema.execute(request.data(Caller(sub))).await)
}

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".into());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() + 86_400)
        .unwrap_or(u64::MAX);
    let claims = Claims {
        sub: "acc_floor".into(),
        exp,
    };
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap_or_default();
    let state = Arc::new(AppState {
        schema: Schema::new(Query, EmptyMutation, EmptySubscription),
        decoding: DecodingKey::from_secret(SECRET),
        validation: Validation::new(Algorithm::HS256),
    });
    let app = Router::new()
        .route("/graphql", post(graphql))
        .with_state(state);
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("floor: cannot listen on {addr}: {err}");
            std::process::exit(1);
        }
    };
    println!("token: {token}");
    println!("listening on {addr}");
    if let Err(err) = axum::serve(listener, app).await {
        eprintln!("floor: {err}");
    }
}
