//! A TOML document as a tree that remembers where every key and value sits.
//!
//! `toml` gives byte ranges through `Spanned<T>`, but `Spanned` fails when a
//! value has no span (an implicit table such as `server` in a file that only
//! writes `[server.behavior]`). This tree asks for the span the same way and
//! falls back to "no span" instead of failing, so any TOML document becomes a
//! tree and every later check can point at a line and column.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

// The private protocol between `toml` and `serde_spanned` (0.6): a struct with
// this name and these fields is answered with a map of start, end and value.
const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
const SPANNED_START: &str = "$__serde_spanned_private_start";
const SPANNED_END: &str = "$__serde_spanned_private_end";
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";
const SPANNED_FIELDS: &[&str] = &[SPANNED_START, SPANNED_END, SPANNED_VALUE];
// `toml_datetime`'s marker key for a datetime value.
const DATETIME_FIELD: &str = "$__toml_private_datetime";

/// A byte range in the scenario text, when TOML knows one.
pub(crate) type Span = Option<Range<usize>>;

/// A key of a table with its position.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub name: String,
    pub span: Span,
}

/// A TOML value with its position.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub span: Span,
    pub value: Value,
}

/// The value part of a [`Node`].
#[derive(Debug, Clone)]
pub(crate) enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Datetime(String),
    Array(Vec<Node>),
    Table(Vec<(Key, Node)>),
}

/// Parses TOML text into a tree; the error is `toml`'s own syntax error.
pub(crate) fn parse(text: &str) -> Result<Node, toml::de::Error> {
    let root = Node::deserialize(toml::Deserializer::new(text))?;
    Ok(root)
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, NodeVisitor)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, KeyVisitor)
    }
}

/// The value inside a spanned wrapper: deserialized without asking for a span.
struct Inner(Node);

impl<'de> Deserialize<'de> for Inner {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor).map(Inner)
    }
}

struct NodeVisitor;

fn bare(value: Value) -> Node {
    Node { span: None, value }
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(bare(Value::Boolean(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(bare(Value::Integer(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        match i64::try_from(v) {
            Ok(v) => Ok(bare(Value::Integer(v))),
            Err(_) => Ok(bare(Value::Float(v as f64))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(bare(Value::Float(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(bare(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(bare(Value::String(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(bare(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let Some(first) = map.next_key::<Key>()? else {
            return Ok(bare(Value::Table(Vec::new())));
        };
        if first.name == SPANNED_START {
            // The spanned form: start, end, then the value itself.
            let start: usize = map.next_value()?;
            let mut end = start;
            let mut inner = None;
            while let Some(key) = map.next_key::<Key>()? {
                if key.name == SPANNED_END {
                    end = map.next_value()?;
                } else if key.name == SPANNED_VALUE {
                    inner = Some(map.next_value::<Inner>()?.0);
                } else {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
            let mut node = inner.ok_or_else(|| de::Error::missing_field("value"))?;
            node.span = Some(start..end);
            return Ok(node);
        }
        if first.name == DATETIME_FIELD {
            let text: String = map.next_value()?;
            return Ok(bare(Value::Datetime(text)));
        }
        let mut entries = Vec::new();
        let value = map.next_value::<Node>()?;
        entries.push((first, value));
        while let Some(key) = map.next_key::<Key>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(bare(Value::Table(entries)))
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(Key {
            name: v.to_owned(),
            span: None,
        })
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Key, E> {
        Ok(Key {
            name: v,
            span: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
        let mut start = None;
        let mut end = None;
        let mut name = None;
        while let Some(field) = map.next_key::<String>()? {
            if field == SPANNED_START {
                start = Some(map.next_value::<usize>()?);
            } else if field == SPANNED_END {
                end = Some(map.next_value::<usize>()?);
            } else if field == SPANNED_VALUE {
                name = Some(map.next_value::<String>()?);
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        let name = name.ok_or_else(|| de::Error::missing_field("value"))?;
        let span = match (start, end) {
            (Some(s), Some(e)) => Some(s..e),
            _ => None,
        };
        Ok(Key { name, span })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(node: &Node) -> &[(Key, Node)] {
        match &node.value {
            Value::Table(t) => t,
            other => panic!("not a table: {other:?}"),
        }
    }

    #[test]
    fn spans_on_keys_values_and_implicit_tables() {
        let text = "a = \"x\"\n[server.behavior]\npreset = \"legacy\"\n[[agent]]\nname = \"n\"\nwhen = 1979-05-27\n";
        let root = parse(text).unwrap();
        let top = table(&root);
        assert_eq!(top[0].0.name, "a");
        assert_eq!(&text[top[0].0.span.clone().unwrap()], "a");
        assert_eq!(&text[top[0].1.span.clone().unwrap()], "\"x\"");
        // `server` is implicit: no span, but the tree is still built.
        assert_eq!(top[1].0.name, "server");
        let behavior = &table(&top[1].1)[0];
        assert_eq!(behavior.0.name, "behavior");
        let agents = &top[2].1;
        let Value::Array(items) = &agents.value else {
            panic!()
        };
        let agent = table(&items[0]);
        assert!(matches!(agent[1].1.value, Value::Datetime(_)));
        assert!(items[0].span.is_some());
    }
}
