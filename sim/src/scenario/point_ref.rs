//! Which restore point an operator action names in a scenario file.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;

/// Which restore point an operator action uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PointRef {
    /// The newest point.
    #[default]
    Latest,
    /// The one before the newest.
    Previous,
    /// Counted back from the newest (0 = newest).
    Back(u32),
}

impl<'de> Deserialize<'de> for PointRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PointVisitor;
        impl Visitor<'_> for PointVisitor {
            type Value = PointRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"latest\", \"previous\" or a point index counted back from the newest (0 = newest)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PointRef, E> {
                match v {
                    "latest" => Ok(PointRef::Latest),
                    "previous" => Ok(PointRef::Previous),
                    _ => Err(E::custom(format!("invalid point {v:?}: expected \"latest\", \"previous\" or an index (0 = newest)"))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PointRef, E> {
                u32::try_from(v).map(PointRef::Back).map_err(|_| E::custom(format!("invalid point index {v}: expected 0 (newest) or more")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PointRef, E> {
                u32::try_from(v).map(PointRef::Back).map_err(|_| E::custom(format!("invalid point index {v}: too large")))
            }
        }
        deserializer.deserialize_any(PointVisitor)
    }
}
