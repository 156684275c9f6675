//! Lists of objects (and single objects) whose selected fields are all stored values.
//!
//! async-graphql resolves every field of every object as its own boxed future, joined in a
//! `FuturesUnordered`, and every list item as another future. That is right for fields that do
//! I/O, but for a page of 50 workspaces asking `{ id slug }` it is most of the request's CPU
//! time (about 1 µs per object, the profile behind `bench/run.sh` shows). A list field that
//! returns [`resolve_items`] is served exactly like `[T!]!` (its SDL and validation are the
//! list type's), and when every field a query selects on its items is one the type lists in
//! [`PlainFields::PLAIN_FIELDS`], the items' values are built directly, in selection order.
//! The same test, [`selects_only_plain`], lets a resolver read less than whole objects (ids
//! and slugs only) when that is all the selection can use. Anything else (a field with a
//! fragment on another type, a directive) goes to async-graphql's own list resolver unchanged,
//! so the fast path only ever answers a question it fully understands. Plain fields skip
//! async-graphql's per-field extension hooks; `build_schema` registers no extensions, and one
//! that needs to see every field would have to turn this path off.
//! `@skip`/`@include` never reach here: async-graphql removes skipped selections before
//! execution.

use async_graphql::{
    indexmap::IndexMap,
    parser::types::{Field, Selection, SelectionSet},
    resolver_utils::resolve_list,
    Context, ContextSelectionSet, Name, OutputType, Positioned, ServerResult, Value,
};

/// Values of one GraphQL object type, some of whose fields are plain stored values.
pub(crate) trait PlainFields: Send + Sync + Sized + 'static {
    /// The GraphQL object type the values are served as.
    const TYPE_NAME: &'static str;

    /// The plain fields, each once: its GraphQL name and how to read its value, exactly as the
    /// field's resolver would give it. The one list both the planner and the builder read.
    const FIELDS: &'static [PlainField<Self>];
}

/// One plain field of `T`: its GraphQL name and its value's reader.
pub(crate) type PlainField<T> = (&'static str, fn(&T) -> Value);

fn is_plain<T: PlainFields>(name: &str) -> bool {
    T::FIELDS.iter().any(|(field, _)| *field == name)
}

/// The value of a plain field of `item`; `None` for any other name.
pub(crate) fn plain_field<T: PlainFields>(item: &T, name: &str) -> Option<Value> {
    T::FIELDS
        .iter()
        .find(|(field, _)| *field == name)
        .map(|(_, read)| read(item))
}

/// Whether every field the list field in `ctx` selects on its items is plain for `T`: what a
/// resolver asks before reading less than the whole object.
pub(crate) fn selects_only_plain<T: PlainFields>(ctx: &Context<'_>) -> bool {
    let items = ctx.with_selection_set(&ctx.item.node.selection_set);
    let mut plan = Vec::new();
    plan_selection::<T>(&items, items.item, &mut plan)
}

/// A list field's value served as `[T!]!` (or `[T!]` inside an `Option`) through
/// [`resolve_items`]: what a resolver returns instead of `Vec<T>` to get the fast path.
pub(crate) struct PlainList<T>(pub Vec<T>);

impl<T: PlainFields + OutputType> OutputType for PlainList<T> {
    fn type_name() -> std::borrow::Cow<'static, str> {
        <Vec<T> as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <Vec<T> as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut async_graphql::registry::Registry) -> String {
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

/// One value served exactly as `T` (a mutation's answer): built directly when the selection
/// is all plain, by `T`'s own resolver otherwise. Seven scalar fields of a connection cost
/// seven boxed futures through async-graphql; built here they cost one small map.
pub(crate) struct PlainObject<T>(pub T);

impl<T: PlainFields + OutputType> OutputType for PlainObject<T> {
    fn type_name() -> std::borrow::Cow<'static, str> {
        T::type_name()
    }

    fn qualified_type_name() -> String {
        T::qualified_type_name()
    }

    fn create_type_info(registry: &mut async_graphql::registry::Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        match plan_plain::<T>(ctx) {
            Some(plan) => Ok(plain_value(&self.0, &plan)),
            None => self.0.resolve(ctx, field).await,
        }
    }
}

/// Resolves `items` as `[T!]!`: built directly when the selection is all plain, by
/// async-graphql's list resolver otherwise.
pub(crate) async fn resolve_items<T: PlainFields + OutputType>(
    ctx: &ContextSelectionSet<'_>,
    field: &Positioned<Field>,
    items: &[T],
) -> ServerResult<Value> {
    match resolve_plain(ctx, items) {
        Some(value) => Ok(value),
        None => resolve_list(ctx, field, items, Some(items.len())).await,
    }
}

/// The list's value built directly, or `None` if the selection needs a resolver.
pub(crate) fn resolve_plain<T: PlainFields>(
    ctx: &ContextSelectionSet<'_>,
    items: &[T],
) -> Option<Value> {
    let plan = plan_plain::<T>(ctx)?;
    Some(Value::List(
        items.iter().map(|item| plain_value(item, &plan)).collect(),
    ))
}

/// The fields the selection in `ctx` reads, each key once, or `None` if it needs a resolver.
fn plan_plain<'a, T: PlainFields>(ctx: &ContextSelectionSet<'a>) -> Option<Vec<Planned<'a>>> {
    let mut plan = Vec::new();
    if !plan_selection::<T>(ctx, ctx.item, &mut plan) {
        return None;
    }
    // A key selected twice keeps its first field, as async-graphql merges scalar fields.
    let mut seen = std::collections::HashSet::new();
    plan.retain(|planned| seen.insert(planned.key));
    Some(plan)
}
/// One selected field: the key it answers under, and the field it reads.
struct Planned<'a> {
    key: &'a Name,
    field: &'a str,
}

/// Flattens `set` into `plan`, or returns `false` if anything in it needs a resolver.
fn plan_selection<'a, T: PlainFields>(
    ctx: &ContextSelectionSet<'a>,
    set: &'a Positioned<SelectionSet>,
    plan: &mut Vec<Planned<'a>>,
) -> bool {
    for selection in &set.node.items {
        match &selection.node {
            Selection::Field(field) => {
                let field = &field.node;
                let name = field.name.node.as_str();
                let plain = name == "__typename" || is_plain::<T>(name);
                if !plain
                    || !field.arguments.is_empty()
                    || !field.directives.is_empty()
                    || !field.selection_set.node.items.is_empty()
                {
                    return false;
                }
                plan.push(Planned {
                    key: &field.response_key().node,
                    field: name,
                });
            }
            Selection::InlineFragment(fragment) => {
                let fragment = &fragment.node;
                let on_this_type = fragment
                    .type_condition
                    .as_ref()
                    .is_none_or(|condition| condition.node.on.node == T::TYPE_NAME);
                if !on_this_type
                    || !fragment.directives.is_empty()
                    || !plan_selection::<T>(ctx, &fragment.selection_set, plan)
                {
                    return false;
                }
            }
            Selection::FragmentSpread(spread) => {
                let Some(fragment) = ctx.query_env.fragments.get(&spread.node.fragment_name.node)
                else {
                    return false;
                };
                if fragment.node.type_condition.node.on.node != T::TYPE_NAME
                    || !spread.node.directives.is_empty()
                    || !fragment.node.directives.is_empty()
                    || !plan_selection::<T>(ctx, &fragment.node.selection_set, plan)
                {
                    return false;
                }
            }
        }
    }
    true
}

/// One item's object, from a plan whose keys are distinct. An object with no fields at all is
/// `null`, as async-graphql answers it.
fn plain_value<T: PlainFields>(item: &T, plan: &[Planned<'_>]) -> Value {
    let mut object = IndexMap::with_capacity(plan.len());
    for planned in plan {
        let value = if planned.field == "__typename" {
            Value::String(T::TYPE_NAME.to_owned())
        } else {
            plain_field(item, planned.field).unwrap_or_default()
        };
        object.insert(planned.key.clone(), value);
    }
    if object.is_empty() {
        Value::Null
    } else {
        Value::Object(object)
    }
}

/// For each type's tests: every plain field is a field of the served type, so the fast path
/// can never answer a name the schema does not have.
#[cfg(test)]
pub(crate) fn assert_plain_fields_are_served<T: PlainFields + OutputType>() {
    assert_eq!(<T as OutputType>::type_name(), T::TYPE_NAME);
    let sdl = crate::sdl();
    let served = sdl
        .split(&format!("type {} {{", T::TYPE_NAME))
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .unwrap_or_else(|| panic!("{} in the SDL", T::TYPE_NAME));
    for (name, _) in T::FIELDS {
        assert!(served.contains(&format!("\t{name}: ")), "{name}");
    }
}
