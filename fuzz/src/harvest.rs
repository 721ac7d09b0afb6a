//! The ids and numbers a message names, found by what they name: the
//! values the generator draws from, so that what it sends a role refers to
//! the tasks, operations, points and blocks the role really holds.
//!
//! It walks a value with serde rather than a match on every message kind:
//! a field or a message added to the protocol is harvested without anyone
//! remembering to. A number is classed by the id type around it
//! (`TaskId`, `SessionId`...) or else by the name of its field (`op`,
//! `batch`, `index`...); digests are collected whole.

use blockferry_core::Digest;
use rand::Rng;
use serde::Serialize;
use serde::ser;
use std::fmt;

/// What a harvested number names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Task,
    Op,
    Batch,
    Session,
    Vm,
    Snap,
    Point,
    Node,
    Change,
    Job,
    Disk,
    /// A block index (or a list of them).
    Index,
    /// A disk's size in bytes.
    Bytes,
    BlockSize,
    Seq,
    /// The length of a list (the blocks a request names: its answer has
    /// as many).
    Count,
}

const KEYS: usize = 16;

impl Key {
    fn of_id_type(name: &str) -> Option<Key> {
        Some(match name {
            "TaskId" => Key::Task,
            "SessionId" => Key::Session,
            "VmId" => Key::Vm,
            "SnapshotId" => Key::Snap,
            "RestorePointId" => Key::Point,
            "NodeId" => Key::Node,
            "ChangeId" => Key::Change,
            "JobId" => Key::Job,
            _ => return None,
        })
    }

    fn of_field(name: &str) -> Option<Key> {
        Some(match name {
            "op" => Key::Op,
            "batch" => Key::Batch,
            "seq" => Key::Seq,
            "disk" => Key::Disk,
            "index" | "first" | "blocks" | "reread" | "changes" | "result" => Key::Index,
            "bytes" | "disk_bytes" | "disks" => Key::Bytes,
            "block_size" => Key::BlockSize,
            _ => return None,
        })
    }
}

/// A bounded bag of values: what one message named, or (as [`Pools`])
/// what a role's recent messages did.
#[derive(Debug, Clone, Default)]
pub struct Found {
    values: Vec<(Key, u64)>,
    digests: Vec<Digest>,
}

/// Values kept from one message: enough to answer it, small enough that
/// a message of a million blocks costs nothing to keep.
const FOUND_VALUES: usize = 160;
const FOUND_DIGESTS: usize = 16;
/// Elements of one list looked at.
const LIST_ELEMENTS: usize = 64;

impl Found {
    /// What `value` names.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Found {
        let mut found = Found::default();
        let mut harvester = Harvester { found: &mut found, key: None, digest: None };
        // Harvesting cannot fail: every method of the walk returns `Ok`.
        let _ = value.serialize(&mut harvester);
        found
    }

    fn push(&mut self, key: Key, value: u64) {
        if self.values.len() < FOUND_VALUES {
            self.values.push((key, value));
        }
    }

    /// The first value of `key` the message named, if any.
    pub fn first(&self, key: Key) -> Option<u64> {
        self.values.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// Every value of `key`, in the order the message named them.
    pub fn all(&self, key: Key) -> impl Iterator<Item = u64> + '_ {
        self.values.iter().filter(move |(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// Adds what `other` found, within the bounds.
    pub fn extend(&mut self, other: &Found) {
        for &(key, value) in &other.values {
            self.push(key, value);
        }
        let room = FOUND_DIGESTS.saturating_sub(self.digests.len());
        self.digests.extend(other.digests.iter().take(room));
    }

    /// One of the values of `key`, if there is any.
    pub fn pick(&self, key: Key, rng: &mut impl Rng) -> Option<u64> {
        let count = self.values.iter().filter(|(k, _)| *k == key).count();
        if count == 0 {
            return None;
        }
        let nth = rng.random_range(0..count);
        self.values.iter().filter(|(k, _)| *k == key).nth(nth).map(|(_, v)| *v)
    }

    pub fn pick_digest(&self, rng: &mut impl Rng) -> Option<Digest> {
        (!self.digests.is_empty()).then(|| self.digests[rng.random_range(0..self.digests.len())])
    }
}

/// The values a role's recent inputs and outputs named, per key: a ring
/// of the latest few of each, so a long run keeps no more than a fresh one.
#[derive(Debug, Clone)]
pub struct Pools {
    rings: [Ring<u64>; KEYS],
    digests: Ring<Digest>,
}

const RING: usize = 16;

#[derive(Debug, Clone)]
struct Ring<T> {
    items: Vec<T>,
    next: usize,
}

impl<T> Default for Ring<T> {
    fn default() -> Self {
        Ring { items: Vec::new(), next: 0 }
    }
}

impl<T: Copy> Ring<T> {
    fn push(&mut self, item: T) {
        if self.items.len() < RING {
            self.items.push(item);
        } else {
            self.items[self.next] = item;
        }
        self.next = (self.next + 1) % RING;
    }

    fn pick(&self, rng: &mut impl Rng) -> Option<T> {
        (!self.items.is_empty()).then(|| self.items[rng.random_range(0..self.items.len())])
    }
}

impl Default for Pools {
    fn default() -> Self {
        Pools { rings: std::array::from_fn(|_| Ring::default()), digests: Ring::default() }
    }
}

impl Pools {
    pub fn add(&mut self, found: &Found) {
        for &(key, value) in &found.values {
            self.rings[key as usize].push(value);
        }
        for &digest in &found.digests {
            self.digests.push(digest);
        }
    }

    pub fn pick(&self, key: Key, rng: &mut impl Rng) -> Option<u64> {
        self.rings[key as usize].pick(rng)
    }

    pub fn pick_digest(&self, rng: &mut impl Rng) -> Option<Digest> {
        self.digests.pick(rng)
    }
}

/// Walks a value, keeping what [`Found`] keeps.
struct Harvester<'a> {
    found: &'a mut Found,
    /// What a number met now names.
    key: Option<Key>,
    /// Inside a `Digest`: its bytes so far.
    digest: Option<Vec<u8>>,
}

impl Harvester<'_> {
    fn number(&mut self, value: u64) {
        if let Some(key) = self.key {
            self.found.push(key, value);
        }
    }

    /// Walks `value` as naming `key`, then restores what the walk named.
    fn under<T: Serialize + ?Sized>(&mut self, key: Option<Key>, value: &T) {
        let outer = std::mem::replace(&mut self.key, key);
        let _ = value.serialize(&mut *self);
        self.key = outer;
    }
}

/// Never raised: the walk only reads.
#[derive(Debug)]
struct Never;

impl fmt::Display for Never {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("harvest error")
    }
}

impl std::error::Error for Never {}

impl ser::Error for Never {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Never
    }
}

/// A list, a tuple or a struct: only a list's first elements are looked
/// at (every byte of a digest is).
struct List<'h, 'a> {
    harvester: &'h mut Harvester<'a>,
    left: usize,
}

impl<'h, 'a> List<'h, 'a> {
    fn new(harvester: &'h mut Harvester<'a>) -> Self {
        let left = if harvester.digest.is_some() { usize::MAX } else { LIST_ELEMENTS };
        List { harvester, left }
    }

    /// A field names what its name says; a block's bytes name nothing
    /// (and are not walked: they are most of a message's size).
    fn field<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) {
        if name != "payload" {
            self.harvester.under(Key::of_field(name), value);
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) {
        if self.left > 0 {
            self.left -= 1;
            let key = self.harvester.key;
            self.harvester.under(key, value);
        }
    }
}

macro_rules! list_impls {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for List<'_, '_> {
            type Ok = ();
            type Error = Never;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
                self.element(value);
                Ok(())
            }
            fn end(self) -> Result<(), Never> {
                Ok(())
            }
        }
    )*};
}

list_impls!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// A struct: each field names what its name says.
impl ser::SerializeStruct for List<'_, '_> {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> Result<(), Never> {
        self.field(name, value);
        Ok(())
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for List<'_, '_> {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> Result<(), Never> {
        self.field(name, value);
        Ok(())
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

/// Maps are walked as lists of keys and values (no message holds one now).
impl ser::SerializeMap for List<'_, '_> {
    type Ok = ();
    type Error = Never;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Never> {
        self.element(key);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        self.element(value);
        Ok(())
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

/// Values that name nothing the generator draws: skipped.
macro_rules! names_nothing {
    ($($method:ident($($arg:ty),*)),* $(,)?) => {$(
        fn $method(self, $(_: $arg),*) -> Result<(), Never> {
            Ok(())
        }
    )*};
}

impl<'h, 'a> ser::Serializer for &'h mut Harvester<'a> {
    type Ok = ();
    type Error = Never;
    type SerializeSeq = List<'h, 'a>;
    type SerializeTuple = List<'h, 'a>;
    type SerializeTupleStruct = List<'h, 'a>;
    type SerializeTupleVariant = List<'h, 'a>;
    type SerializeMap = List<'h, 'a>;
    type SerializeStruct = List<'h, 'a>;
    type SerializeStructVariant = List<'h, 'a>;

    fn serialize_u8(self, v: u8) -> Result<(), Never> {
        if let Some(bytes) = &mut self.digest {
            bytes.push(v);
        }
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Never> {
        self.number(u64::from(v));
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Never> {
        self.number(u64::from(v));
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Never> {
        self.number(v);
        Ok(())
    }
    names_nothing! {
        serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32), serialize_i64(i64),
        serialize_f32(f32), serialize_f64(f64), serialize_char(char), serialize_str(&str), serialize_bytes(&[u8]),
        serialize_none(), serialize_unit(), serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Never> {
        value.serialize(self)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, value: &T) -> Result<(), Never> {
        if name == "Digest" {
            self.digest = Some(Vec::with_capacity(32));
            let _ = value.serialize(&mut *self);
            let bytes = self.digest.take().unwrap_or_default();
            if let (Ok(digest), true) = (<[u8; 32]>::try_from(bytes), self.found.digests.len() < FOUND_DIGESTS) {
                self.found.digests.push(Digest(digest));
            }
            return Ok(());
        }
        let key = Key::of_id_type(name).or(self.key);
        self.under(key, value);
        Ok(())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        // `BlockData::Bytes`: a block's plaintext.
        if variant == "Bytes" {
            return Ok(());
        }
        value.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<List<'h, 'a>, Never> {
        if let Some(len) = len {
            self.found.push(Key::Count, len as u64);
        }
        Ok(List::new(self))
    }
    fn serialize_tuple(self, _: usize) -> Result<List<'h, 'a>, Never> {
        Ok(List::new(self))
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<List<'h, 'a>, Never> {
        Ok(List::new(self))
    }
    fn serialize_tuple_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<List<'h, 'a>, Never> {
        Ok(List::new(self))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<List<'h, 'a>, Never> {
        Ok(List::new(self))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<List<'h, 'a>, Never> {
        Ok(List::new(self))
    }
    fn serialize_struct_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<List<'h, 'a>, Never> {
        Ok(List::new(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blockferry_core::wire::message::{BlockRef, DiskTarget};
    use blockferry_core::{Message, SessionId, TaskId, VmId};
    use rand::SeedableRng;

    #[test]
    fn a_message_yields_its_ids_by_what_they_name() {
        let msg = Message::PutBlocks {
            task: TaskId(7),
            batch: 3,
            target: DiskTarget { session: SessionId(11), vm: VmId(2), disk: 1 },
            blocks: vec![BlockRef { index: 42, digest: Digest([9; 32]), payload: None }],
        };
        let found = Found::of(&msg);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        assert_eq!(found.pick(Key::Task, &mut rng), Some(7));
        assert_eq!(found.pick(Key::Batch, &mut rng), Some(3));
        assert_eq!(found.pick(Key::Session, &mut rng), Some(11));
        assert_eq!(found.pick(Key::Vm, &mut rng), Some(2));
        assert_eq!(found.pick(Key::Disk, &mut rng), Some(1));
        assert_eq!(found.pick(Key::Index, &mut rng), Some(42));
        assert_eq!(found.pick(Key::Op, &mut rng), None);
        assert_eq!(found.pick_digest(&mut rng), Some(Digest([9; 32])));
    }
}
