//! The wire protocol: typed messages and the frame codec that carries them.

pub mod frame;
pub mod handshake;
pub mod message;

pub use frame::{FrameDecoder, FrameError, MAX_FRAME_DEFAULT, PROTOCOL_VERSION, encode_frame, frame_len};
pub use handshake::{Hello, HelloError};
pub use message::Message;
