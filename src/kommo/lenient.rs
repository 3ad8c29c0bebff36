//! Lenient reading, in one place: Kommo's JSON is not always typed as its
//! documentation says (ids as strings, numbers as floats, `null` lists,
//! booleans as 0/1), and one odd field must never cost a whole page.
//!
//! Two families, for two needs:
//! - leads keep every field in `raw` and type their columns strictly:
//!   [`Scalar`] tells what a field was (for the misfit message), and the
//!   `lenient_*` deserializers of the lead's links take only what is
//!   unambiguous (a positive integer id, a JSON `true`);
//! - the structure listings keep only typed columns: the `opt_*`
//!   deserializers take what can be read sensibly (a numeric string, 0/1)
//!   and leave the rest `None`.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A lead field read without knowing its type in advance.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) enum Scalar<'a> {
    #[default]
    Absent,
    Null,
    Integer(i64),
    Text(Cow<'a, str>),
    /// Anything else: what it was, for the message.
    Other(&'static str, String),
}

impl Scalar<'_> {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Scalar::Absent | Scalar::Null => "null",
            Scalar::Integer(_) => "an integer",
            Scalar::Text(_) => "a string",
            Scalar::Other(kind, _) => kind,
        }
    }

    /// The value for a message, at most 40 characters.
    pub(super) fn describe(&self) -> String {
        let text = match self {
            Scalar::Absent | Scalar::Null => "null".to_string(),
            Scalar::Integer(n) => n.to_string(),
            Scalar::Text(t) => serde_json::to_string(t).unwrap_or_default(),
            Scalar::Other(_, shown) => shown.clone(),
        };
        if text.chars().count() <= 40 {
            text
        } else {
            format!("{}…", text.chars().take(40).collect::<String>())
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(V)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Other("a boolean", b.to_string()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Integer(n))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
                Ok(i64::try_from(n).map_or_else(
                    |_| Scalar::Other("a fractional or out-of-range number", n.to_string()),
                    Scalar::Integer,
                ))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Other(
                    "a fractional or out-of-range number",
                    n.to_string(),
                ))
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Text(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                Ok(Scalar::Text(Cow::Owned(s)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other("an array", "[…]".into()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other("an object", "{…}".into()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `true` only for a JSON `true`; anything else is not a boolean here.
pub(super) fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Scalar::deserialize(d)? {
        Scalar::Other("a boolean", shown) => Some(shown == "true"),
        _ => None,
    })
}

/// The elements of a list that can be read; nothing when the field is not
/// a list. One odd element does not cost the others.
pub(super) fn lenient_list<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    let items = match serde_json::Value::deserialize(d)? {
        serde_json::Value::Array(items) => items,
        _ => return Ok(Vec::new()),
    };
    Ok(items
        .into_iter()
        .filter_map(|item| serde_json::from_value(item).ok())
        .collect())
}

/// A positive integer id, or nothing.
pub(super) fn lenient_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Scalar::deserialize(d)? {
        Scalar::Integer(id) if id > 0 => Some(id),
        _ => None,
    })
}

/// An integer sent as a number (or an integral float) or a numeric string;
/// anything else is `None`.
pub(crate) fn lenient_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(lenient_i64(&Value::deserialize(d)?))
}

/// A string, or a number written out; anything else is `None`.
pub(super) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// A boolean, or 0/1; anything else is `None`.
pub(super) fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(b) => Some(b),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        _ => None,
    })
}

/// An array of elements, or `None` (null, not an array).
pub(super) fn opt_array<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Value>>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => Some(items),
        _ => None,
    })
}
