//! JSON bodies read strictly: a key given twice in one object is an error naming the key,
//! where `serde_json` alone would keep the last value.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// Checks that no object in the JSON text `text` gives a key twice. Syntax errors are errors
/// too; nesting is bounded by `serde_json`'s recursion limit.
pub fn unique_keys(text: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<Unique>(text).map(drop)
}

/// Any JSON value whose objects each give a key once.
struct Unique;

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        while seq.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key `{}` is given twice",
                    key.escape_debug()
                )));
            }
            map.next_value::<Unique>()?;
            seen.insert(key);
        }
        Ok(Unique)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_given_twice_is_named() {
        let e = unique_keys(br#"{"period":1,"period":12}"#).expect_err("twice");
        assert!(
            e.to_string().contains("the key `period` is given twice"),
            "{e}"
        );
        // At any depth, and however the key is escaped.
        let e = unique_keys(br#"{"a":[{"b":1,"\u0062":2}]}"#).expect_err("nested");
        assert!(e.to_string().contains("`b`"), "{e}");
        unique_keys(br#"{"a":{"a":1},"b":[{"a":1},{"a":2}],"c":null,"d":-1.5e3}"#)
            .expect("each key once per object");
        assert!(unique_keys(b"{").is_err());
        // Nesting past serde_json's limit is an error, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(unique_keys(deep.as_bytes()).is_err());
    }
}
