//! The benchmark's floor: the least a GraphQL server can do to answer `me { id name }` for a
//! bearer token. axum + async-graphql, an HS256 JWT verified per request, no database, no
//! logging, no metrics. Taxbridge's request path is measured as a ratio to this.
//!
//! It also serves `me { workspaces(limit) { id slug } }` and `me { workspacesJson(limit) }`
//! from memory: the most any axum + async-graphql server can reach on the workspace page case,
//! with the fields resolved one by one and with the page handed over as one JSON value.
//!
//! Usage: `floor ADDR`. Prints `token: <jwt>` (valid for a day) and `listening on ADDR`.

use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Schema, SimpleObject, ID};
use axum::{extract::State, http::HeaderMap, routing::post, Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The same allocator as taxbridge, so the ratios compare request paths, not allocators.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRET: &[u8] = b"floor-benchmark-secret-32-bytes!";

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

#[derive(SimpleObject)]
#[graphql(complex)]
struct Me {
    id: ID,
    name: Option<String>,
}

/// A workspace as the page case selects it, held in memory.
#[derive(SimpleObject, Clone)]
struct Workspace {
    id: ID,
    slug: String,
}

#[async_graphql::ComplexObject]
impl Me {
    /// The first `limit` of 100 in-memory workspaces: what async-graphql alone costs to
    /// resolve and serialise a page, with no storage behind it.
    async fn workspaces(&self, ctx: &Context<'_>, limit: Option<i32>) -> Vec<Workspace> {
        let all = &ctx.data_unchecked::<Arc<Vec<Workspace>>>();
        let limit = usize::try_from(limit.unwrap_or(50)).unwrap_or(0);
        all.iter().take(limit).cloned().collect()
    }
    /// The same page as one JSON value built by hand: the least a GraphQL server can do to
    /// return it (no per-field resolution), which leaves only serialising and sending it.
    async fn workspaces_json(
        &self,
        ctx: &Context<'_>,
        limit: Option<i32>,
    ) -> async_graphql::Json<serde_json::Value> {
        let all = &ctx.data_unchecked::<Arc<Vec<Workspace>>>();
        let limit = usize::try_from(limit.unwrap_or(50)).unwrap_or(0);
        async_graphql::Json(serde_json::Value::Array(
            all.iter()
                .take(limit)
                .map(|w| serde_json::json!({"id": w.id.0, "slug": w.slug}))
                .collect(),
        ))
    }
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
        // Schema data, so `me { id name }` pays nothing for the page cases.
        schema: Schema::build(Query, EmptyMutation, EmptySubscription)
            .data(Arc::new(
                (0..100)
                    .map(|i| Workspace {
                        id: ID(format!("wsp_{:032x}", u128::MAX - i)),
                        slug: format!("floor-firm-{i}"),
                    })
                    .collect::<Vec<_>>(),
            ))
            .finish(),
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
