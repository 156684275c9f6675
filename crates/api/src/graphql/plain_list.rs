//! Lists of objects (and single objects) whose selected fields are all leaves, resolved one
//! field after another instead of as a future each.
//!
//! async-graphql resolves every field of every object as its own boxed future, joined in a
//! `FuturesUnordered`, and every list item as another future. That is right for fields that do
//! I/O, but for a page of 50 workspaces asking `{ id slug }` it is most of the request's CPU
//! time (about 1 µs per object, the profile behind `bench/run.sh` shows). A list field that
//! returns [`resolve_items`] is served exactly like `[T!]!` (its SDL and validation are the
//! list type's), and when every field a query selects on its items is a leaf (a scalar or an
//! enum: no selection of its own), each item's fields are resolved in selection order by the
//! type's own resolvers (`ContainerType::resolve_field`, what async-graphql itself calls),
//! awaited in turn inside one future. So the names, values and errors are the derive's own:
//! nothing here restates a field. Anything else (a field with a sub-selection, a fragment on
//! another type, a directive) goes to async-graphql's own list resolver unchanged.
//!
//! Leaf fields are awaited one after another, not concurrently: right for stored values, and
//! still correct for a leaf that does I/O, only slower; such a field belongs behind an object.
//! Fields resolved here skip async-graphql's per-field extension hooks; `build_schema`
//! registers no extensions, and one that needs to see every field would have to turn this path
//! off. `@skip`/`@include` never reach here: async-graphql removes skipped selections before
//! execution.

use async_graphql::{
    indexmap::IndexMap,
    parser::types::{Field, Selection, SelectionSet},
    registry::{MetaType, Registry},
    resolver_utils::resolve_list,
    ContainerType, Context, ContextSelectionSet, Name, OutputType, Positioned, ServerResult, Value,
};
use std::collections::HashSet;

/// A list field's value served as `[T!]!` (or `[T!]` inside an `Option`) through
/// [`resolve_items`]: what a resolver returns instead of `Vec<T>` to get the fast path.
pub(crate) struct PlainList<T>(pub Vec<T>);

impl<T: ContainerType + OutputType> OutputType for PlainList<T> {
    fn type_name() -> std::borrow::Cow<'static, str> {
        <Vec<T> as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <Vec<T> as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Vec<T> as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        resolve_items(ctx, field, &self.0).await
    }
}

/// One value served exactly as `T` (a mutation's answer): its leaf fields resolved in turn
/// when the selection is all leaves, by `T`'s own container resolver otherwise. Seven scalar
/// fields of a connection cost seven boxed futures through async-graphql; here, one.
pub(crate) struct PlainObject<T>(pub T);

impl<T: ContainerType + OutputType> OutputType for PlainObject<T> {
    fn type_name() -> std::borrow::Cow<'static, str> {
        T::type_name()
    }

    fn qualified_type_name() -> String {
        T::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        match plan_leaves::<T>(ctx) {
            Some(plan) => Ok(leaf_object(ctx, &self.0, &plan).await),
            None => self.0.resolve(ctx, field).await,
        }
    }
}

/// Resolves `items` as `[T!]!`: leaf by leaf when the selection is all leaves, by
/// async-graphql's list resolver otherwise.
pub(crate) async fn resolve_items<T: ContainerType + OutputType>(
    ctx: &ContextSelectionSet<'_>,
    field: &Positioned<Field>,
    items: &[T],
) -> ServerResult<Value> {
    let Some(plan) = plan_leaves::<T>(ctx) else {
        return resolve_list(ctx, field, items, Some(items.len())).await;
    };
    let mut list = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        list.push(leaf_object(&ctx.with_index(index), item, &plan).await);
    }
    Ok(Value::List(list))
}

/// Whether the list field in `ctx` selects, on its items, only leaves that `fields` names (or
/// `__typename`): what a resolver asks before reading less than whole objects.
pub(crate) fn selects_only(ctx: &Context<'_>, type_name: &str, fields: &LeafNames) -> bool {
    let items = ctx.with_selection_set(&ctx.item.node.selection_set);
    let mut plan = Vec::new();
    plan_selection(&items, type_name, items.item, &mut plan)
        && plan
            .iter()
            .all(|planned| planned.name == "__typename" || fields.0.contains(planned.name))
}

/// The leaf fields an object type resolves, read from its own type information (the
/// derive's), for [`selects_only`].
pub(crate) struct LeafNames(HashSet<String>);

impl LeafNames {
    /// The fields of `T` whose type is a scalar or an enum.
    pub(crate) fn of<T: OutputType>() -> Self {
        let mut registry = Registry::default();
        T::create_type_info(&mut registry);
        let Some(MetaType::Object { fields, .. }) = registry.types.get(T::type_name().as_ref())
        else {
            return Self(HashSet::new());
        };
        let leaf = |ty: &str| {
            registry
                .concrete_type_by_name(ty)
                .is_some_and(MetaType::is_leaf)
        };
        Self(
            fields
                .values()
                .filter(|field| leaf(&field.ty))
                .map(|field| field.name.clone())
                .collect(),
        )
    }

    #[cfg(test)]
    pub(crate) fn names(&self) -> &HashSet<String> {
        &self.0
    }
}

/// The leaves the selection in `ctx` reads, each key once, or `None` if it needs a resolver.
fn plan_leaves<'a, T: OutputType>(ctx: &ContextSelectionSet<'a>) -> Option<Vec<Planned<'a>>> {
    let mut plan = Vec::new();
    if !plan_selection(ctx, &T::type_name(), ctx.item, &mut plan) {
        return None;
    }
    // A key selected twice keeps its first field, as async-graphql merges leaf fields.
    let mut seen = HashSet::new();
    plan.retain(|planned| seen.insert(planned.key));
    Some(plan)
}

/// One selected leaf: the key it answers under, its name, and the field as written.
struct Planned<'a> {
    key: &'a Name,
    name: &'a str,
    field: &'a Positioned<Field>,
}

/// Flattens `set` into `plan`, or returns `false` if anything in it needs a resolver.
fn plan_selection<'a>(
    ctx: &ContextSelectionSet<'a>,
    type_name: &str,
    set: &'a Positioned<SelectionSet>,
    plan: &mut Vec<Planned<'a>>,
) -> bool {
    for selection in &set.node.items {
        match &selection.node {
            Selection::Field(positioned) => {
                let field = &positioned.node;
                if !field.directives.is_empty() || !field.selection_set.node.items.is_empty() {
                    return false;
                }
                plan.push(Planned {
                    key: &field.response_key().node,
                    name: field.name.node.as_str(),
                    field: positioned,
                });
            }
            Selection::InlineFragment(fragment) => {
                let fragment = &fragment.node;
                let on_this_type = fragment
                    .type_condition
                    .as_ref()
                    .is_none_or(|condition| condition.node.on.node == type_name);
                if !on_this_type
                    || !fragment.directives.is_empty()
                    || !plan_selection(ctx, type_name, &fragment.selection_set, plan)
                {
                    return false;
                }
            }
            Selection::FragmentSpread(spread) => {
                let Some(fragment) = ctx.query_env.fragments.get(&spread.node.fragment_name.node)
                else {
                    return false;
                };
                if fragment.node.type_condition.node.on.node != type_name
                    || !spread.node.directives.is_empty()
                    || !fragment.node.directives.is_empty()
                    || !plan_selection(ctx, type_name, &fragment.node.selection_set, plan)
                {
                    return false;
                }
            }
        }
    }
    true
}

/// One item's object, from a plan whose keys are distinct, as async-graphql's container
/// resolver builds it: a field whose resolver fails is recorded as an error and left out, and
/// an object with no fields at all is `null`.
async fn leaf_object<T: ContainerType + OutputType>(
    ctx: &ContextSelectionSet<'_>,
    item: &T,
    plan: &[Planned<'_>],
) -> Value {
    let mut object = IndexMap::with_capacity(plan.len());
    for planned in plan {
        if planned.name == "__typename" {
            let name = item.introspection_type_name().into_owned();
            object.insert(planned.key.clone(), Value::String(name));
            continue;
        }
        match item.resolve_field(&ctx.with_field(planned.field)).await {
            Ok(value) => {
                object.insert(planned.key.clone(), value.unwrap_or_default());
            }
            Err(error) => ctx.add_error(error),
        }
    }
    if object.is_empty() {
        Value::Null
    } else {
        Value::Object(object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::{
        extensions::{Extension, ExtensionContext, ExtensionFactory, NextResolve, ResolveInfo},
        ComplexObject, EmptyMutation, EmptySubscription, Enum, Error, Json, Object, Schema,
        SimpleObject, ID,
    };
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    #[derive(Enum, Copy, Clone, Eq, PartialEq)]
    #[graphql(rename_items = "lowercase")]
    enum Kind {
        Partner,
        Customer,
    }

    #[derive(SimpleObject, Clone)]
    #[graphql(complex)]
    struct Item {
        id: ID,
        display_name: String,
        #[graphql(name = "type")]
        kind: Kind,
        note: Option<String>,
        metadata: Option<Json<serde_json::Value>>,
        #[graphql(skip)]
        hidden: String,
    }

    #[ComplexObject]
    impl Item {
        async fn shout(&self, suffix: Option<String>) -> String {
            format!("{}{}", self.hidden, suffix.unwrap_or_default())
        }
        async fn broken(&self) -> Result<Option<String>, Error> {
            Err(Error::new("this field fails"))
        }
        async fn strict(&self) -> Result<String, Error> {
            Err(Error::new("this non-null field fails"))
        }
        async fn child(&self) -> Option<Item> {
            None
        }
    }

    fn items() -> Vec<Item> {
        (0..3)
            .map(|n| Item {
                id: ID(format!("item_{n}")),
                display_name: format!("Item {n}"),
                kind: if n % 2 == 0 {
                    Kind::Partner
                } else {
                    Kind::Customer
                },
                note: (n == 1).then(|| "a note".to_owned()),
                metadata: (n == 2).then(|| Json(serde_json::json!({"a": [1, "b"]}))),
                hidden: format!("HIDDEN{n}"),
            })
            .collect()
    }

    struct Query;

    #[Object]
    impl Query {
        async fn fast(&self) -> PlainList<Item> {
            PlainList(items())
        }
        async fn slow(&self) -> Vec<Item> {
            items()
        }
        async fn fast_one(&self) -> PlainObject<Item> {
            PlainObject(items().remove(1))
        }
        async fn slow_one(&self) -> Item {
            items().remove(1)
        }
    }

    /// Counts every resolver async-graphql runs through its extension hooks: the fields the
    /// leaf path resolves are not among them, which tells the paths apart.
    #[derive(Clone, Default)]
    struct CountResolves(Arc<AtomicUsize>);

    impl ExtensionFactory for CountResolves {
        fn create(&self) -> Arc<dyn Extension> {
            Arc::new(self.clone())
        }
    }

    #[async_trait::async_trait]
    impl Extension for CountResolves {
        async fn resolve(
            &self,
            ctx: &ExtensionContext<'_>,
            info: ResolveInfo<'_>,
            next: NextResolve<'_>,
        ) -> ServerResult<Option<Value>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            next.run(ctx, info).await
        }
    }

    fn schema(counter: Option<CountResolves>) -> Schema<Query, EmptyMutation, EmptySubscription> {
        let builder = Schema::build(Query, EmptyMutation, EmptySubscription);
        match counter {
            Some(counter) => builder.extension(counter).finish(),
            None => builder.finish(),
        }
    }

    /// The answer to `{ <field> <selection> }` as JSON, the field's name replaced by `list`
    /// in data and error paths so the two paths' answers compare whole.
    async fn answer(field: &str, selection: &str) -> serde_json::Value {
        let fragment = if selection.contains("...F") {
            "fragment F on Item { id note }"
        } else {
            ""
        };
        let query = format!("{fragment} {{ list: {field} {selection} }}");
        let response = schema(None).execute(query).await;
        let mut json = serde_json::to_value(&response).expect("a response serializes");
        if let Some(errors) = json.get_mut("errors").and_then(|e| e.as_array_mut()) {
            for error in errors {
                if let Some(path) = error.get_mut("path").and_then(|p| p.as_array_mut()) {
                    path[0] = "list".into();
                }
                if let Some(object) = error.as_object_mut() {
                    object.remove("locations");
                }
            }
        }
        json
    }

    #[tokio::test]
    async fn leaves_answer_as_the_types_own_resolvers_do() {
        let selections = [
            "{ id displayName }",
            "{ a: displayName displayName b: id id }",
            "{ __typename id type }",
            "{ note metadata }",
            "{ ... on Item { id } note }",
            "{ ... { type } }",
            "{ ...F displayName }",
            "{ shout }",
            "{ shout(suffix: \"!\") id }",
            "{ id broken }",
            "{ strict id }",
            "{ id child { id } }",
            "{ id @include(if: true) note @skip(if: true) }",
        ];
        for selection in selections {
            let fast = answer("fast", selection).await;
            // Every selection here is valid: the answers compare data, not a refusal.
            assert!(fast["data"]["list"].is_array(), "{selection}: {fast}");
            assert_eq!(
                answer("fast", selection).await,
                answer("slow", selection).await,
                "list {selection}"
            );
            assert_eq!(
                answer("fastOne", selection).await,
                answer("slowOne", selection).await,
                "one {selection}"
            );
        }
        let plain = answer("fast", "{ id metadata }").await;
        assert_eq!(plain["data"]["list"][2]["metadata"]["a"][1], "b");
    }

    #[tokio::test]
    async fn only_a_selection_of_leaves_takes_the_leaf_path() {
        let resolves = |query: &'static str| async move {
            let counter = CountResolves::default();
            let response = schema(Some(counter.clone())).execute(query).await;
            assert!(response.errors.is_empty(), "{:?}", response.errors);
            counter.0.load(Ordering::SeqCst)
        };
        // The list field alone: its three items' six leaves ran without a hook each.
        assert_eq!(resolves("{ fast { id displayName } }").await, 1);
        assert_eq!(resolves("{ fastOne { id displayName } }").await, 1);
        // async-graphql's own path: the field, each item, and each item's fields.
        assert_eq!(resolves("{ slow { id displayName } }").await, 1 + 3 + 6);
        // An object field on the items sends the whole list down async-graphql's path.
        assert_eq!(resolves("{ fast { id child { id } } }").await, 1 + 3 + 6);
    }
}
