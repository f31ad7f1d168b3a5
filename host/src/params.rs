//! What eb needs from a call's params, read in the same pass that reads the request (a
//! multi-MiB newPayload is scanned once, never built into a tree): the block or head hash of
//! the first param, the first param when it is a string (a payloadId), and whether a second
//! param is present (forkchoiceUpdated's payload attributes).

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// The parts of the params eb routes on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    /// `params[0].blockHash` (newPayload) or `params[0].headBlockHash` (forkchoiceUpdated).
    pub hash: Option<String>,
    /// `params[0]` when it is a string (getPayload's payloadId).
    pub first_string: Option<String>,
    /// `params[1]` exists and is not null (forkchoiceUpdated with payload attributes).
    pub has_second: bool,
}

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Params, D::Error> {
        deserializer.deserialize_any(ParamsVisitor)
    }
}

struct ParamsVisitor;

impl<'de> Visitor<'de> for ParamsVisitor {
    type Value = Params;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("params as an array or an object")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Params, A::Error> {
        let mut params = Params::default();
        if let Some(first) = seq.next_element_seed(FirstSeed)? {
            params.hash = first.hash;
            params.first_string = first.string;
        }
        if let Some(second) = seq.next_element::<Option<IgnoredAny>>()? {
            params.has_second = second.is_some();
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(params)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Params::default())
    }
}

#[derive(Default)]
struct First {
    hash: Option<String>,
    string: Option<String>,
}

struct FirstSeed;

impl<'de> DeserializeSeed<'de> for FirstSeed {
    type Value = First;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<First, D::Error> {
        deserializer.deserialize_any(FirstVisitor)
    }
}

struct FirstVisitor;

/// A map key, borrowed when it has no escapes.
#[derive(Deserialize)]
struct Key<'a>(#[serde(borrow)] std::borrow::Cow<'a, str>);

impl<'de> Visitor<'de> for FirstVisitor {
    type Value = First;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<First, A::Error> {
        let mut first = First::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if key == "blockHash" || key == "headBlockHash" {
                first.hash = map.next_value::<Option<String>>()?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(first)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<First, E> {
        Ok(First {
            hash: None,
            string: Some(value.to_owned()),
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<First, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(First::default())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<First, E> {
        Ok(First::default())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<First, E> {
        Ok(First::default())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<First, E> {
        Ok(First::default())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<First, E> {
        Ok(First::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<First, E> {
        Ok(First::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Params, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn reads_hashes_ids_and_attributes_in_one_pass() {
        let np = read(
            r#"[{"parentHash":"0x1","transactions":["0x02"],"blockHash":"0xB1"},[],"0x2",[]]"#,
        )
        .expect("valid");
        assert_eq!(np.hash.as_deref(), Some("0xB1"));
        let fcu = read(r#"[{"headBlockHash":"0xH","safeBlockHash":"0x0"},null]"#).expect("valid");
        assert_eq!((fcu.hash.as_deref(), fcu.has_second), (Some("0xH"), false));
        let build = read(r#"[{"headBlockHash":"0xH"},{"timestamp":"0x1"}]"#).expect("valid");
        assert!(build.has_second);
        let bare = read(r#"[{"headBlockHash":"0xH"}]"#).expect("valid");
        assert!(!bare.has_second);
        let get = read(r#"["0x0011223344556677"]"#).expect("valid");
        assert_eq!(get.first_string.as_deref(), Some("0x0011223344556677"));
        assert_eq!(read("[]").expect("valid"), Params::default());
        assert_eq!(
            read(r#"{"a":[1,{"b":2}]}"#).expect("valid"),
            Params::default()
        );
        assert!(
            read(r#"[1, true, null, 2.5, [[]]]"#)
                .expect("valid")
                .has_second
        );
        let escaped = read(r#"[{"block\u0048ash":"0xE"}]"#).expect("valid");
        assert_eq!(escaped.hash.as_deref(), Some("0xE"));
    }

    #[test]
    fn refuses_params_that_are_not_an_array_or_an_object() {
        for bad in ["7", "\"x\"", "null", "true", "[{\"blockHash\": 5}]"] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }
}
