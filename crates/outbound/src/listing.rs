//! A platform's answer read as it streams, never held as a JSON tree: a pull keeps the first
//! `limit` items of the list it asked for, stops reading there, and charges every byte it
//! read to the request's [`PullBudget`]; a single object (a client, a verify answer) is read
//! whole within the answer cap and parsed straight into the fields the protocol names.
//!
//! serde_json parses from a blocking reader on a blocking thread, which asks for the next
//! chunk of the response as it takes one: a visitor keeps the items and ends the parse once it
//! has enough, which drops the reader and so ends the download. Why not a streaming JSON crate: serde_json
//! already does the parsing, and the visitor that cuts the list is a page of serde.

use crate::EgressError;
use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess};
use std::{
    cell::{Cell, RefCell},
    fmt,
    io::Read,
};
use taxbridge_domain::platform::{PlatformFailure, PullBudget};

/// One JSON value where the protocol expects a scalar: a string, a number (kept as its text
/// and, when whole, as an integer), or anything else, skipped without being held.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Scalar {
    #[default]
    Absent,
    Text(String),
    Number {
        text: String,
        int: Option<i64>,
    },
    Other,
}

impl Scalar {
    /// An id as the platform spells it: a non-empty string, or a number read as one.
    pub fn id(&self) -> Option<String> {
        match self {
            Scalar::Text(text) if !text.is_empty() => Some(text.clone()),
            Scalar::Number { text, .. } => Some(text.clone()),
            _ => None,
        }
    }

    pub fn text(self) -> Option<String> {
        match self {
            Scalar::Text(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Text(text) => Some(text),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Scalar::Number { int, .. } => *int,
            _ => None,
        }
    }
}

impl<'de> de::Deserialize<'de> for Scalar {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> de::Visitor<'de> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar::Text(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Number {
                    text: v.to_string(),
                    int: Some(v),
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Number {
                    text: v.to_string(),
                    int: i64::try_from(v).ok(),
                })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Number {
                    text: serde_json::Number::from_f64(v)
                        .map_or_else(|| v.to_string(), |n| n.to_string()),
                    int: None,
                })
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// A client as partner protocol v1 lists it; other fields are skipped unread.
#[derive(Debug, serde::Deserialize)]
pub struct RawClient {
    #[serde(default)]
    pub id: Scalar,
    #[serde(default)]
    pub name: Scalar,
    #[serde(default)]
    pub email: Scalar,
    #[serde(default)]
    pub phone: Scalar,
    #[serde(default, rename = "type")]
    pub kind: Scalar,
    #[serde(default, rename = "lastModified")]
    pub last_modified: Scalar,
}

/// A client's file as partner protocol v1 lists it.
#[derive(Debug, serde::Deserialize)]
pub struct RawFile {
    #[serde(default)]
    pub id: Scalar,
    #[serde(default, rename = "fileName")]
    pub file_name: Scalar,
    #[serde(default, rename = "fileSize")]
    pub file_size: Scalar,
    #[serde(default, rename = "mimeType")]
    pub mime_type: Scalar,
    #[serde(default, rename = "downloadUrl")]
    pub download_url: Scalar,
    #[serde(default, rename = "dateCreated")]
    pub date_created: Scalar,
}

/// `GET /v1/verify`'s answer.
#[derive(Debug, serde::Deserialize)]
pub struct RawFirm {
    #[serde(default, rename = "firmId")]
    pub firm_id: Scalar,
    #[serde(default, rename = "firmName")]
    pub firm_name: Scalar,
}

/// What a list holds.
pub trait Item: DeserializeOwned + Send + 'static {}
impl Item for RawClient {}
impl Item for RawFile {}

fn body_failure(err: EgressError) -> PlatformFailure {
    PlatformFailure::Unreachable(format!("the answer broke off: {err}"))
}

fn too_large(cap: usize) -> PlatformFailure {
    PlatformFailure::BadAnswer(EgressError::TooLarge(cap).to_string())
}

/// At most `limit` items of the list under `key` in the JSON object `opened` streams; reading
/// stops once they are in. Every byte read is charged to `budget`; an answer over `cap`
/// bytes is refused.
pub async fn read_list<T: Item>(
    opened: crate::Opened,
    key: &'static str,
    limit: usize,
    cap: usize,
    budget: &PullBudget,
) -> Result<Vec<T>, PlatformFailure> {
    // The parser asks for the next chunk (`want`) as it takes one, so one is read from the
    // network while it parses the last, and no more: a list cut at its limit has read at
    // most one chunk past the one it was cut in.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let (want, mut wanted) = tokio::sync::mpsc::channel::<()>(1);
    let parser = tokio::task::spawn_blocking(move || {
        // serde_json reads a byte at a time; std reads those from a `BufReader`'s buffer
        // without a call into the reader per byte.
        let reader = std::io::BufReader::with_capacity(
            READ_BUFFER_BYTES,
            ChannelReader {
                rx,
                want,
                current: Bytes::new(),
                ended: false,
            },
        );
        parse_list::<T>(reader, key, limit)
    });
    let mut stream = std::pin::pin!(opened.into_stream());
    let mut read = 0usize;
    let mut failure = None;
    loop {
        let chunk = match stream.next().await {
            None => break,
            Some(Ok(chunk)) => chunk,
            Some(Err(err)) => {
                failure = Some(body_failure(err));
                break;
            }
        };
        read += chunk.len();
        if read > cap {
            failure = Some(too_large(cap));
            break;
        }
        if let Err(spent) = budget.take(chunk.len() as u64) {
            failure = Some(spent);
            break;
        }
        // Ends when the parser is done: it drops its side.
        if tx.send(chunk).await.is_err() || wanted.recv().await.is_none() {
            break;
        }
    }
    drop((tx, wanted));
    let parsed = parser
        .await
        .map_err(|_| PlatformFailure::BadAnswer("it could not be read".into()))?;
    match (parsed, failure) {
        (Ok(items), _) => Ok(items),
        (Err(_), Some(failure)) => Err(failure),
        (Err(message), None) => Err(PlatformFailure::BadAnswer(message)),
    }
}

/// One JSON object read whole (within `cap`, charged to `budget` when there is one) and
/// parsed into `T`.
pub async fn read_one<T: DeserializeOwned>(
    opened: crate::Opened,
    cap: usize,
    budget: Option<&PullBudget>,
) -> Result<T, PlatformFailure> {
    if opened
        .headers
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|len| len > cap as u64)
    {
        return Err(too_large(cap));
    }
    let mut stream = std::pin::pin!(opened.into_stream());
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(body_failure)?;
        if body.len() + chunk.len() > cap {
            return Err(too_large(cap));
        }
        if let Some(budget) = budget {
            budget.take(chunk.len() as u64)?;
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|err| {
        PlatformFailure::BadAnswer(if err.is_data() {
            "it is not a JSON object of the protocol's fields".into()
        } else {
            "the body is not JSON".into()
        })
    })
}

/// What the parser takes from the chunks at a time.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// The chunks a response sends, as a blocking reader for serde_json: taking a chunk asks for
/// the next one.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    want: tokio::sync::mpsc::Sender<()>,
    current: Bytes,
    ended: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.current = chunk;
                    // Full only if a request is already waiting: nothing more to ask.
                    let _ = self.want.try_send(());
                }
                None => {
                    self.ended = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// Where the parse was when it stopped, for saying what was wrong.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Top,
    List,
    Items,
    Done,
}

struct Answer<'a, T> {
    key: &'a str,
    limit: usize,
    items: &'a RefCell<Vec<T>>,
    stage: &'a Cell<Stage>,
    enough: &'a Cell<bool>,
}

impl<'de, T: Item> DeserializeSeed<'de> for Answer<'_, T> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, T: Item> de::Visitor<'de> for Answer<'_, T> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == self.key && self.stage.get() == Stage::Top {
                self.stage.set(Stage::List);
                map.next_value_seed(List {
                    limit: self.limit,
                    items: self.items,
                    stage: self.stage,
                    enough: self.enough,
                })?;
                self.stage.set(Stage::Done);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct List<'a, T> {
    limit: usize,
    items: &'a RefCell<Vec<T>>,
    stage: &'a Cell<Stage>,
    enough: &'a Cell<bool>,
}

impl<'de, T: Item> DeserializeSeed<'de> for List<'_, T> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, T: Item> de::Visitor<'de> for List<'_, T> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.stage.set(Stage::Items);
        loop {
            if self.items.borrow().len() >= self.limit {
                // Enough: end the parse here, unread, and say so through `enough`.
                self.enough.set(true);
                return Err(de::Error::custom("the list has the items asked for"));
            }
            match seq.next_element::<T>()? {
                Some(item) => self.items.borrow_mut().push(item),
                None => return Ok(()),
            }
        }
    }
}

/// Parses the object `reader` gives, keeping at most `limit` items of its list `key`.
fn parse_list<T: Item>(reader: impl Read, key: &str, limit: usize) -> Result<Vec<T>, String> {
    let items = RefCell::new(Vec::new());
    let stage = Cell::new(Stage::Top);
    let enough = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let outcome = Answer {
        key,
        limit,
        items: &items,
        stage: &stage,
        enough: &enough,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end());
    if enough.get() {
        return Ok(items.into_inner());
    }
    match (outcome, stage.get()) {
        (Ok(()), Stage::Done) => Ok(items.into_inner()),
        (Ok(()), _) => Err(format!("it has no `{key}` list")),
        (Err(err), _) if err.is_syntax() || err.is_eof() || err.is_io() => {
            Err("the body is not JSON".into())
        }
        (Err(_), Stage::Top) => Err("it is not a JSON object".into()),
        (Err(_), Stage::List) => Err(format!("it has no `{key}` list")),
        (Err(_), _) => Err(format!(
            "an item of `{key}` is not an object of the protocol's fields"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str, limit: usize) -> Result<Vec<RawClient>, String> {
        parse_list(json.as_bytes(), "clients", limit)
    }

    #[test]
    fn a_list_is_cut_at_the_limit_and_the_rest_is_never_read() {
        let ids = |items: Vec<RawClient>| -> Vec<String> {
            items.iter().filter_map(|c| c.id.id()).collect()
        };
        let json = r#"{"clients": [{"id": "a"}, {"id": 2}, {"id": "c"}], "next": null}"#;
        assert_eq!(ids(parse(json, 500).expect("all")), ["a", "2", "c"]);
        assert_eq!(ids(parse(json, 2).expect("two")), ["a", "2"]);
        // What follows the cut is never read: not even a broken tail is noticed.
        let broken_tail = r#"{"clients": [{"id": "a"}, {"id": "b"}, {"id": "c"}, garbage"#;
        assert_eq!(ids(parse(broken_tail, 3).expect("cut")), ["a", "b", "c"]);
    }

    #[test]
    fn scalars_are_read_leniently_and_nothing_else_is_held() {
        let json = r#"{"clients": [{"id": 7.5, "name": {"deep": [1, [2, [3]]]}, "email": "e@x",
            "phone": null, "type": true, "unknown": [1, 2, 3]}]}"#;
        let client = parse(json, 10).expect("one").remove(0);
        assert_eq!(client.id.id().as_deref(), Some("7.5"));
        assert_eq!(client.name, Scalar::Other);
        assert_eq!(client.email.text().as_deref(), Some("e@x"));
        assert_eq!(client.kind, Scalar::Other);
    }

    #[test]
    fn what_is_wrong_is_said() {
        for (json, said) in [
            ("not json", "the body is not JSON"),
            (r#"{"clients": [{"id": 1}"#, "the body is not JSON"),
            ("[1, 2]", "it is not a JSON object"),
            (r#"{"other": []}"#, "it has no `clients` list"),
            (r#"{"clients": {"id": 1}}"#, "it has no `clients` list"),
            (r#"{"clients": ["x"]}"#, "an item of `clients`"),
        ] {
            let err = parse(json, 10).expect_err(json);
            assert!(err.starts_with(said), "{json}: {err}");
        }
    }
}
