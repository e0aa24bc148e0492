//! Cooperative cancellation of blocking work whose caller has gone.
//!
//! A request's work runs on the blocking pool; when the client leaves or the request times
//! out, the awaiting future is dropped but the blocking task runs on. [`scope`] ties the two:
//! the future holds a [`Guard`] that raises a flag when dropped, and the blocking task runs
//! with that flag as its thread's current one, so the long loops (packet reading,
//! canonicalization) can ask [`cancelled`] every few thousand events and stop. A thread-local
//! rather than a parameter, so the parsers keep their plain signatures and code outside a
//! request (the CLI, tests) is never cancelled.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    static CURRENT: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

/// Raises the flag when dropped: held by the future that awaits the blocking work.
pub struct Guard(Arc<AtomicBool>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The flag a blocking task runs under.
pub struct Flag(Arc<AtomicBool>);

/// A guard for the awaiting side and the flag for the blocking side.
pub fn scope() -> (Guard, Flag) {
    let f = Arc::new(AtomicBool::new(false));
    (Guard(f.clone()), Flag(f))
}

impl Flag {
    /// Runs `f` on this thread with this flag as the current one.
    pub fn run<T>(self, f: impl FnOnce() -> T) -> T {
        let previous = CURRENT.with(|c| c.replace(Some(self.0)));
        struct Restore(Option<Arc<AtomicBool>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let p = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = p);
            }
        }
        let _restore = Restore(previous);
        f()
    }
}

/// Whether the work running on this thread has been given up by its caller.
pub fn cancelled() -> bool {
    CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    })
}

/// How many reader events pass between two checks: cheap enough to be invisible, often
/// enough that a cancelled 64 MiB packet stops within milliseconds.
const EVERY: u32 = 4096;

/// What a reading loop calls once per event: says `true` (every [`EVERY`] events at most)
/// once the current work has been given up.
pub struct Ticker(u32);

impl Default for Ticker {
    fn default() -> Ticker {
        Ticker(EVERY)
    }
}

impl Ticker {
    pub fn cancelled(&mut self) -> bool {
        self.0 -= 1;
        if self.0 > 0 {
            return false;
        }
        self.0 = EVERY;
        cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_follows_the_guard() {
        let (guard, flag) = scope();
        assert!(!cancelled());
        let (started, wait_started) = std::sync::mpsc::channel();
        let h = std::thread::spawn(move || {
            flag.run(|| {
                started.send(cancelled()).unwrap();
                while !cancelled() {
                    std::thread::yield_now();
                }
            });
            // Outside `run` the thread is not cancelled any more.
            cancelled()
        });
        assert!(
            !wait_started.recv().unwrap(),
            "not cancelled before the guard drops"
        );
        drop(guard);
        assert!(!h.join().unwrap());
        assert!(!cancelled());
    }
}
