//! Feeding a node as a driver does, with its panics caught: the message
//! and location of one is what a panic report says.

use blockferry_core::Timestamp;
use blockferry_core::node::{Input, Node, Output};
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Feeds `input` to `node` and hands every output to `take`, as a driver
/// does, catching a panic: `Err` is its message and location.
pub fn feed(node: &mut impl Node, now: Timestamp, input: Input, mut take: impl FnMut(Output)) -> Result<(), String> {
    install_panic_hook();
    QUIET.set(true);
    let fed = catch_unwind(AssertUnwindSafe(|| {
        node.handle(now, input);
        while let Some(output) = node.poll_output() {
            take(output);
        }
    }));
    QUIET.set(false);
    fed.map_err(|_| LAST_PANIC.take().unwrap_or_else(|| "a panic without a message".into()))
}

thread_local! {
    /// Set while a fuzzed node runs: its panics are recorded, not printed.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records the panics of fuzzed nodes (message and location) for their
/// report; every other panic (a failing test) prints as usual.
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let usual = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.get() {
                LAST_PANIC.set(Some(info.to_string()));
            } else {
                usual(info);
            }
        }));
    });
}
