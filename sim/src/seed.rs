//! Randomness from the run's seed. Each consumer gets its own ChaCha stream
//! of the one seed, so adding a node or a fault generator never shifts the
//! numbers another one draws.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Independent streams of one seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stream {
    /// Node `n`'s own RNG (given to its state machine).
    Node(u32),
    /// The world: workloads, synthesized content, fault draws.
    World,
    /// turmoil's world RNG.
    Turmoil,
    /// Which messages links with `breaks` break on (both engines).
    Network,
    /// Swarm: the scenario drawn for a seed.
    Swarm,
    /// Swarm: the instant the drawn scenario starts at (a stream of its
    /// own, so the rest of a seed's draw is what it was before starts were
    /// drawn).
    SwarmStart,
}

impl Stream {
    fn index(self) -> u64 {
        match self {
            Stream::Node(n) => u64::from(n),
            Stream::World => 1 << 40,
            Stream::Turmoil => (1 << 40) + 1,
            Stream::Network => (1 << 40) + 2,
            Stream::Swarm => (1 << 40) + 3,
            Stream::SwarmStart => (1 << 40) + 4,
        }
    }
}

/// The RNG for `stream` of a run seeded with `seed`.
pub fn rng(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream.index());
    rng
}

/// A 64-bit seed for a component that wants a plain number (turmoil).
pub fn derive_u64(seed: u64, stream: Stream) -> u64 {
    use rand::RngCore;
    rng(seed, stream).next_u64()
}
