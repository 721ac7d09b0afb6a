//! Every kind of message, as the type itself lists them: serde's derive
//! hands a deserializer the names of all an enum's variants, so asking
//! for them cannot fall behind the protocol. The generator makes each kind
//! by this list, and a test checks a short run made every one of them: a
//! variant added to `Message` without a way to generate it fails that test.

use blockferry_core::Message;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{self, Impossible, Serialize, Serializer};
use std::fmt;

/// The kinds of message, named as [`Message::kind`] names them, in
/// declaration order.
pub fn message_kinds() -> Vec<String> {
    let mut probe = Probe(&[]);
    // The probe stops every deserialization at the enum: the error is the
    // expected outcome, the names are what it leaves behind.
    let _ = Message::deserialize(&mut probe);
    probe.0.iter().map(|name| snake_case(name)).collect()
}

/// The name of `value`'s variant, as serde's derive names it (an `Event`
/// has no `kind`): the walk stops at the variant, nothing else is visited.
pub fn variant_of<T: Serialize>(value: &T) -> Option<&'static str> {
    match value.serialize(NameOf) {
        Ok(name) | Err(Named(Some(name))) => Some(name),
        Err(Named(None)) => None,
    }
}

/// `StartBackupTask` → `start_backup_task`.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// A deserializer that only records an enum's variant names.
struct Probe(&'static [&'static str]);

#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probe stops here")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for &mut Probe {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_enum<V: Visitor<'de>>(self, _: &'static str, variants: &'static [&'static str], _: V) -> Result<V::Value, Stop> {
        self.0 = variants;
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

/// A serializer that only names the variant it is given.
struct NameOf;

/// Where the walk stopped: at a variant (its name), or at anything else.
#[derive(Debug)]
struct Named(Option<&'static str>);

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "variant {:?}", self.0)
    }
}

impl std::error::Error for Named {}

impl ser::Error for Named {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Named(None)
    }
}

/// Methods of a value that is no enum variant: the walk stops.
macro_rules! not_a_variant {
    ($($method:ident($($arg:ty),*)),* $(,)?) => {$(
        fn $method(self, $(_: $arg),*) -> Result<&'static str, Named> {
            Err(Named(None))
        }
    )*};
}

impl Serializer for NameOf {
    type Ok = &'static str;
    type Error = Named;
    type SerializeSeq = Impossible<&'static str, Named>;
    type SerializeTuple = Impossible<&'static str, Named>;
    type SerializeTupleStruct = Impossible<&'static str, Named>;
    type SerializeTupleVariant = Impossible<&'static str, Named>;
    type SerializeMap = Impossible<&'static str, Named>;
    type SerializeStruct = Impossible<&'static str, Named>;
    type SerializeStructVariant = Impossible<&'static str, Named>;

    not_a_variant! {
        serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32), serialize_i64(i64),
        serialize_u8(u8), serialize_u16(u16), serialize_u32(u32), serialize_u64(u64), serialize_f32(f32),
        serialize_f64(f64), serialize_char(char), serialize_str(&str), serialize_bytes(&[u8]), serialize_none(),
        serialize_unit(), serialize_unit_struct(&'static str),
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<&'static str, Named> {
        Err(Named(None))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, _: &T) -> Result<&'static str, Named> {
        Err(Named(None))
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<&'static str, Named> {
        Ok(variant)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: &T,
    ) -> Result<&'static str, Named> {
        Ok(variant)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Named> {
        Err(Named(Some(variant)))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Named> {
        Err(Named(Some(variant)))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Named> {
        Err(Named(None))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Named> {
        Err(Named(None))
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, Named> {
        Err(Named(None))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Named> {
        Err(Named(None))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Named> {
        Err(Named(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named_as_messages_name_themselves() {
        let kinds = message_kinds();
        assert!(kinds.len() > 70, "{kinds:?}");
        for (kind, msg) in [("ping", Message::Ping { seq: 1 }), ("abort_tasks", Message::AbortTasks), ("keepalive", Message::Keepalive)] {
            assert!(kinds.iter().any(|k| k == kind) && msg.kind() == kind, "{kind}");
        }
        assert_eq!(snake_case("StartBackupTask"), "start_backup_task");
    }

    #[test]
    fn a_variant_is_named_without_its_fields() {
        use blockferry_core::{Event, NodeId};
        assert_eq!(variant_of(&Event::InputRefused { peer: NodeId(1), reason: "no".into() }), Some("InputRefused"));
        assert_eq!(variant_of(&Message::AbortTasks), Some("AbortTasks"));
        assert_eq!(variant_of(&Message::Ping { seq: 1 }), Some("Ping"));
        assert_eq!(variant_of(&7u32), None);
    }
}
